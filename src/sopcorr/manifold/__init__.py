"""The paper's core (sections 2-4, Algorithm 1): kernel Fisher discriminant embedding (`kfd`),
Ward part clustering (`hac`), Gaussian part models (`sop_model`), graph-cut refinement
(`graphcut`), label metrics (`metrics`) and the loop that ties them together (`refine`)."""
from .kfd import KernelFisherDiscriminant
from .refine import Embedding, ManifoldParams, ManifoldResult, embed_grid, run_manifold

__all__ = ["KernelFisherDiscriminant", "Embedding", "ManifoldParams", "ManifoldResult",
           "embed_grid", "run_manifold"]
