"""The named methods of the evaluation tables, each one matcher over one set of frames.

A method name (``nn_raw``, ``ours_geometric_prior``, ...) is a matcher kind, the params it is
built with, the frames it reads (which embedding) and whether keypoint localisation applies the
location prior. :func:`build_method` builds it from :class:`MatcherSettings` (the typed
settings of a job, built once from its rule's params) and the job's frames and checkpoints.
This module imports no matcher at import time (the Snakefile reads :data:`METHODS` and
:func:`method_inputs` at parse time).

========================== =========================================================================
``nn_raw``                 nearest neighbour (cosine) on the raw backbone features
``nn_embed_iter1``         nearest neighbour on the embedding after the loop's first iteration
``nn_embed``               nearest neighbour on the final manifold embedding
``nn_embed_labels``        as nn_embed, a cell matching only cells of its own SOP label
``pseudo_gt``              the pseudo-ground-truth matcher of the variant (:mod:`.pseudo`): the same
                           object, settings and validity that wrote flow/<variant>/<cat>.zarr
``siftflow``               SIFT flow on dense SIFT (radius ``evaluate.siftflow_radius`` px at the cell
                           centres of the raw feature grid)
``convflow``               SIFT flow on the raw backbone features
``ours_network``           the learned Siamese network's own read-out (siamese/<variant>/model.pt; the
                           correlation network: correlation + kernel soft-argmax, one forward pass)
``ours_finetuned``         the Siamese network fine-tuned (siamese/<variant>/finetuned.pt), its read-out
``ours_network_geometric`` the trained network's read-out with the geometric matcher's location
                           prior: affine models fitted to mutual matches of its learned descriptors
                           (siamese/<variant>/model.pt), the prior added to its correlation, read
                           out by its kernel soft-argmax
``ours_geometric``         the improved variant's geometric matcher (raw features + embedding)
``arch_paper``             the paper's flow network (architecture paper) trained on the same teacher
                           (ablation; siamese/<variant>/model.pt when it is the configured one)
``arch_paper_finetuned``   the same fine-tuned (ablation)
``arch_correlation``       the correlation network (architecture correlation) trained on the same
                           teacher (ablation; siamese/<variant>/model.pt when it is the configured one)
``arch_correlation_finetuned`` the same fine-tuned (ablation)
``geo_raw``                the geometric matcher on raw features alone (ablation)
``geo_concat``             = ours_geometric without the pseudo ground truth's validity (ablation)
``<m>_prior``              method m with the keypoint location prior (localisation only)
========================== =========================================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import SopcorrError
from ..geometry import DenseCorrespondence

__all__ = ["ARCHITECTURES", "CHECKPOINTS", "MethodSpec", "METHODS", "Method", "MatcherSettings", "build_method", "method_inputs",
           "method_kinds", "method_descriptions", "parse_name_table"]


@dataclass(frozen=True)
class MethodSpec:
    """kind: the matcher ('nn', 'siftflow', 'geometric', 'pseudo_gt', 'siamese'); variant: a
    fixed variation of the kind's params ('raw' / 'embedding' / 'labels' for nn, 'sift' /
    'conv' for siftflow, 'raw' for geometric without the embedding); embedding: which
    embedding the frames carry ('embedding', 'embedding_iter1' or None); labels: the frames
    carry SOP labels; checkpoint: 'model' | 'finetuned' | None; prior: the location prior in
    keypoint localisation; base: the method whose correspondences it shares."""

    kind: str
    variant: str = ""
    embedding: str | None = None
    labels: bool = False
    checkpoint: str | None = None
    image: bool = False
    prior: bool = False
    base: str = ""


#: the Siamese architectures (siamese.architecture) the ablation trains side by side
ARCHITECTURES = ("paper", "correlation")

#: checkpoint inputs a method may read: the configured network ('model', 'finetuned') and the
#: ablation's network of each architecture ('model_<architecture>', 'finetuned_<architecture>')
CHECKPOINTS = ("model", "finetuned", *(f"{k}_{a}" for a in ARCHITECTURES for k in ("model", "finetuned")))


def _specs() -> dict[str, MethodSpec]:
    s = {
        "nn_raw": MethodSpec("nn", "raw"),
        "nn_embed_iter1": MethodSpec("nn", "embedding", embedding="embedding_iter1"),
        "nn_embed": MethodSpec("nn", "embedding", embedding="embedding"),
        "nn_embed_labels": MethodSpec("nn", "labels", embedding="embedding", labels=True),
        "pseudo_gt": MethodSpec("pseudo_gt", embedding="embedding"),
        "siftflow": MethodSpec("siftflow", "sift", image=True),
        "convflow": MethodSpec("siftflow", "conv"),
        "ours_network": MethodSpec("siamese", checkpoint="model", image=True),
        "ours_finetuned": MethodSpec("siamese", checkpoint="finetuned", image=True),
        "ours_network_geometric": MethodSpec("network_geometric", checkpoint="model"),
        **{f"arch_{a}{ft}": MethodSpec("siamese", checkpoint=f"{'finetuned' if ft else 'model'}_{a}", image=True)
           for a in ARCHITECTURES for ft in ("", "_finetuned")},
        "ours_geometric": MethodSpec("geometric", embedding="embedding"),
        "geo_raw": MethodSpec("geometric", "raw"),
        "geo_concat": MethodSpec("geometric", embedding="embedding"),
    }
    out = {}
    for name, spec in s.items():
        out[name] = replace(spec, base=name)
    for name in ("siftflow", "convflow", "ours_network", "ours_finetuned", "ours_geometric"):
        out[f"{name}_prior"] = replace(out[name], prior=True)
    return out


#: every named method
METHODS: dict[str, MethodSpec] = _specs()


def _spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise SopcorrError(f"unknown method '{name}' (valid: {', '.join(METHODS)})")
    return METHODS[name]


def method_kinds(names) -> set[str]:
    """The matcher kinds the methods ``names`` use (which settings a job needs)."""
    return {_spec(n).kind for n in names}


def method_inputs(names) -> list[str]:
    """The inputs besides instances and raw features the methods ``names`` read, in a fixed
    order: 'embedding', 'embedding_iter1', 'labels', then :data:`CHECKPOINTS`."""
    need = set()
    for n in names:
        sp = _spec(n)
        need |= {x for x in (sp.embedding, sp.checkpoint) if x}
        if sp.labels:
            need.add("labels")
    return [k for k in ("embedding", "embedding_iter1", "labels", *CHECKPOINTS) if k in need]


@dataclass
class Method:
    """A named method: ``correspondence(s, t)`` is ``matcher.correspondence(frames[s],
    frames[t])`` for instance indices s, t. ``base``: the method whose correspondences it
    shares (a prior variant shares its base's); ``prior``: apply the location prior."""

    name: str
    base: str
    matcher: Any
    frames: Any
    prior: bool = False

    def correspondence(self, src: int, tgt: int) -> DenseCorrespondence:
        return self.matcher.correspondence(self.frames[int(src)], self.frames[int(tgt)])


@dataclass(frozen=True)
class MatcherSettings:
    """The typed settings of one job's matchers (each None when the job does not use that
    kind); build with :meth:`from_params` from a rule's ``matchers`` params entry."""

    nn: Any = None
    siftflow: Any = None
    geometric: Any = None
    pseudo_gt: Any = None
    siamese: Any = None

    @classmethod
    def from_params(cls, values: dict, devices: dict | None = None) -> "MatcherSettings":
        """values: {'nn': {...}, 'siftflow': {...}, 'geometric': {...}, 'pseudo_gt': {...},
        'siamese': {...}} (any subset), each the config keys of that matcher (see common.smk's
        ``matcher_params``); devices: {'flow': ..., 'siamese': ...} (execution settings:
        'flow' for nearest neighbours and the pseudo ground truth, 'siamese' for the network;
        default 'auto')."""
        from .geometric import GeometricParams
        from .nn import NNParams
        from .pseudo import PseudoGTParams
        from .siamese import SiameseParams
        from .siftflow import SiftFlowParams

        classes = {"nn": NNParams, "siftflow": SiftFlowParams, "geometric": GeometricParams,
                   "pseudo_gt": PseudoGTParams, "siamese": SiameseParams}
        unknown = sorted(set(values) - set(classes))
        if unknown:
            raise SopcorrError(f"matcher settings: unknown matcher '{unknown[0]}' (valid: {', '.join(classes)})")
        dev = dict(devices or {})
        fixed = {"nn": {"device": dev.get("flow", "auto")}, "pseudo_gt": {"device": dev.get("flow", "auto")},
                 "siamese": {"device": dev.get("siamese", "auto")}}
        return cls(**{k: classes[k].from_config(v, **fixed.get(k, {})) for k, v in values.items()})


def _need(settings: MatcherSettings, kind: str, name: str):
    val = getattr(settings, kind)
    if val is None:
        raise SopcorrError(f"method {name}: the job was given no '{kind}' matcher settings (rule params)")
    return val


def build_matcher(name: str, settings: MatcherSettings, checkpoints: dict | None = None):
    """The matcher of method ``name`` (a SopcorrError when a setting or checkpoint it needs
    was not given)."""
    from . import build
    from .pseudo import build_pseudo_gt

    sp = _spec(name)
    if sp.kind == "nn":
        p = _need(settings, "nn", name)
        descriptor = "features" if sp.variant == "raw" else "embedding"
        return build("nn", replace(p, descriptor=descriptor, mutual=False, labels=sp.labels, refine="none"))
    if sp.kind == "siftflow":
        p = _need(settings, "siftflow", name)
        return build("siftflow", replace(p, descriptor="sift" if sp.variant == "sift" else "features"))
    if sp.kind == "geometric":
        p = _need(settings, "geometric", name)
        return build("geometric", replace(p, embedding_weight=0.0) if sp.variant == "raw" else p)
    if sp.kind == "pseudo_gt":
        return build_pseudo_gt(_need(settings, "pseudo_gt", name))
    if sp.kind == "siamese":
        ck = (checkpoints or {}).get(sp.checkpoint)
        if ck is None:
            raise SopcorrError(f"method {name}: the job was given no '{sp.checkpoint}' checkpoint")
        return build("siamese", _need(settings, "siamese", name), checkpoint=ck)
    if sp.kind == "network_geometric":
        ck = (checkpoints or {}).get(sp.checkpoint)
        if ck is None:
            raise SopcorrError(f"method {name}: the job was given no '{sp.checkpoint}' checkpoint")
        p = replace(_need(settings, "geometric", name), embedding_weight=0.0)
        sp = _need(settings, "siamese", name)
        return build("network_geometric", p, checkpoint=ck, device=sp.device, siamese=sp)
    raise SopcorrError(f"method {name}: unknown matcher kind '{sp.kind}'")  # pragma: no cover


def build_method(name: str, settings: MatcherSettings, frames: dict, checkpoints: dict | None = None,
                 matchers: dict | None = None) -> Method:
    """The method ``name`` over ``frames`` ({'embedding': FrameSource with the final embedding
    (and labels), 'embedding_iter1': FrameSource with the iteration-1 embedding, 'raw':
    FrameSource of raw features alone}; a method takes the first that carries what it needs).
    ``matchers``: an optional {base name: matcher} cache shared between a method and its
    prior variant."""
    sp = _spec(name)
    key = sp.embedding or "raw"
    src = frames.get(key)
    if src is None and key == "raw":
        src = frames.get("embedding")
    if src is None:
        raise SopcorrError(f"method {name}: the job was given no frames with '{key}' (rule inputs)")
    cache = matchers if matchers is not None else {}
    if sp.base not in cache:
        cache[sp.base] = build_matcher(sp.base, settings, checkpoints)
    return Method(name, sp.base, cache[sp.base], src, sp.prior)


def build_methods(names, settings: MatcherSettings, frames: dict, checkpoints: dict | None = None) -> list[Method]:
    """:func:`build_method` for every name (matchers shared between a method and its prior
    variant)."""
    cache: dict = {}
    return [build_method(n, settings, frames, checkpoints, cache) for n in names]


def parse_name_table(doc: str) -> dict[str, str]:
    """{name: description} from an RST simple table whose rows start with ````name````
    (continuation lines indented) between ``====`` rules. Sphinx roles (``:mod:`x```) become
    plain literals (````x````): the descriptions are rendered by plain docutils too."""
    out: dict[str, str] = {}
    inside = False
    current = None
    for line in doc.splitlines():
        if re.fullmatch(r"=+( +=+)+\s*", line):
            inside = not inside
            current = None
            continue
        if not inside:
            continue
        m = re.match(r"``([A-Za-z0-9_]+)``\s+(.*)", line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current and line.strip():
            out[current] += " " + line.strip()
    return {k: re.sub(r":[a-z]+:`([^`]+)`", r"``\1``", v) for k, v in out.items()}


def method_descriptions() -> dict[str, str]:
    """{method name: one-line description} of the methods of :data:`METHODS` that this
    module's table describes (the one place they are written: the report's front page and
    ``sopcorr match`` read them here); a ``<m>_prior`` method is its base's description with
    the location prior."""
    table = parse_name_table(__doc__ or "")
    out = {}
    for name, spec in METHODS.items():
        if name in table:
            out[name] = table[name]
        elif spec.prior and spec.base in table:
            out[name] = f"{table[spec.base]}, with the keypoint location prior (localisation only)"
    return out
