"""The named methods of the evaluation tables, each one matcher over one set of frames.

A method name (``nn_raw``, ``ours_geometric_prior``, ...) is a :class:`MethodSpec`: a matcher
kind, the params it is built with, the frames it reads (which embedding), whether keypoint
localisation applies the location prior, and its description (the report's front page and
``sopcorr match`` print it). :func:`build_method` builds it from :class:`MatcherSettings` (the
typed settings of a job, built once from its rule's params) and the job's frames and
checkpoints, through the builder of its kind (:data:`BUILDERS`). A ``<m>_prior`` method is
method m with the keypoint location prior (localisation only). This module imports no matcher
at import time (the Snakefile reads :data:`METHODS` and :func:`method_inputs` at parse time).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import SopcorrError
from ..geometry import DenseCorrespondence
from ..siamese.settings import ARCHITECTURES

if TYPE_CHECKING:  # the params classes, for the annotations only (no import at parse time)
    from .geometric import GeometricParams
    from .networks import NetworkParams
    from .nn import NNParams
    from .pseudo import PseudoGTParams
    from .siftflow import SiftFlowParams

__all__ = ["CHECKPOINTS", "MAX_ROUNDS", "MethodSpec", "METHODS", "Method", "MatcherSettings", "BUILDERS", "build_method",
           "build_matcher", "method_inputs", "method_kinds", "method_descriptions"]


@dataclass(frozen=True)
class MethodSpec:
    """kind: the matcher ('nn', 'siftflow', 'geometric', 'pseudo_gt', 'siamese': a trained
    network, its class chosen by its checkpoint, 'network_geometric'); description: what the
    method is, one line; variant: a fixed variation of the kind's params ('raw' / 'embedding'
    / 'labels' for nn, 'sift' / 'conv' for siftflow, 'raw' for geometric without the
    embedding); embedding: which embedding the frames carry ('embedding', 'embedding_iter1' or
    None); labels: the frames carry SOP labels; checkpoint: a key of :data:`CHECKPOINTS` or
    None; image: the method reads the frames' images; prior: the location prior in keypoint
    localisation; base: the method whose correspondences it shares."""

    kind: str
    description: str
    variant: str = ""
    embedding: str | None = None
    labels: bool = False
    checkpoint: str | None = None
    image: bool = False
    prior: bool = False
    base: str = ""


#: checkpoint inputs a method may read: the configured network ('model', 'finetuned') and the
#: ablation's network of each architecture ('model_<architecture>', 'finetuned_<architecture>')
#: and the network of each self-training round ('model_round<r>', r = 1 .. MAX_ROUNDS: the ablation)
MAX_ROUNDS = 4
CHECKPOINTS = ("model", "finetuned", *(f"{k}_{a}" for a in ARCHITECTURES for k in ("model", "finetuned")),
               *(f"model_round{r}" for r in range(1, MAX_ROUNDS + 1)))

_PRIOR = ", with the keypoint location prior (localisation only)"
_ARCH = {"paper": "the paper's flow network (architecture paper)",
         "correlation": "the correlation network (architecture correlation)"}


def _arch_spec(arch: str, finetuned: bool) -> MethodSpec:
    """The ablation's network of architecture ``arch`` (checkpoint ``<model|finetuned>_<arch>``)."""
    kind = "finetuned" if finetuned else "model"
    where = (f"siamese/<variant>/{kind}.pt when it is the configured one, else "
             f"siamese/<variant>/architecture_{arch}/{kind}.pt")
    return MethodSpec("siamese", f"{_ARCH[arch]} trained on the same teacher{' and fine-tuned' if finetuned else ''} "
                      f"(ablation; {where})", checkpoint=f"{kind}_{arch}", image=True)


def _specs() -> dict[str, MethodSpec]:
    s = {
        "nn_raw": MethodSpec("nn", "nearest neighbour (cosine) on the raw backbone features", "raw"),
        "nn_embed_iter1": MethodSpec("nn", "nearest neighbour on the embedding after the loop's first iteration",
                                     "embedding", embedding="embedding_iter1"),
        "nn_embed": MethodSpec("nn", "nearest neighbour on the final manifold embedding", "embedding",
                               embedding="embedding"),
        "nn_embed_labels": MethodSpec("nn", "as nn_embed, a cell matching only cells of its own SOP label",
                                      "labels", embedding="embedding", labels=True),
        "pseudo_gt": MethodSpec("pseudo_gt", "the pseudo-ground-truth matcher of the variant (``.pseudo``): the same "
                                "object, settings and validity that wrote flow/<variant>/<cat>.zarr",
                                embedding="embedding"),
        "siftflow": MethodSpec("siftflow", "SIFT flow on dense SIFT (radius ``evaluate.siftflow_radius`` px at the "
                               "cell centres of the raw feature grid)", "sift", image=True),
        "convflow": MethodSpec("siftflow", "SIFT flow on the raw backbone features", "conv"),
        "ours_network": MethodSpec("siamese", "the learned Siamese network's own read-out "
                                   "(siamese/<variant>/model.pt; the correlation network: correlation + kernel "
                                   "soft-argmax, one forward pass)", checkpoint="model", image=True),
        "ours_finetuned": MethodSpec("siamese", "the Siamese network fine-tuned (siamese/<variant>/finetuned.pt), "
                                     "its read-out", checkpoint="finetuned", image=True),
        "ours_network_geometric": MethodSpec(
            "network_geometric", "the trained network's read-out with the geometric matcher's location prior: "
            "affine models fitted to mutual matches of its learned descriptors (siamese/<variant>/model.pt), the "
            "prior added to its correlation, read out by its kernel soft-argmax", checkpoint="model"),
        **{f"arch_{a}{ft}": _arch_spec(a, bool(ft)) for a in ARCHITECTURES for ft in ("", "_finetuned")},
        **{f"ours_network_round{r}": MethodSpec(
            "siamese", f"the network of self-training round {r}, its own read-out (siamese/<variant>/"
            f"{'round%d/' % r if r > 1 else ''}model.pt; ablation, siamese.rounds)", checkpoint=f"model_round{r}",
            image=True) for r in range(1, MAX_ROUNDS + 1)},
        "ours_geometric": MethodSpec("geometric", "the improved variant's geometric matcher (raw features + "
                                     "embedding)", embedding="embedding"),
        "geo_raw": MethodSpec("geometric", "the geometric matcher on raw features alone (ablation)", "raw"),
        "geo_concat": MethodSpec("geometric", "= ours_geometric without the pseudo ground truth's validity "
                                 "(ablation)", embedding="embedding"),
    }
    out = {}
    for name, spec in s.items():
        out[name] = replace(spec, base=name)
    for name in ("siftflow", "convflow", "ours_network", "ours_finetuned", "ours_geometric"):
        out[f"{name}_prior"] = replace(out[name], prior=True, description=out[name].description + _PRIOR)
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
    kind); build with :meth:`from_params` from a rule's ``matchers`` params entry. ``siamese``:
    how the job's trained networks run (whichever architecture their checkpoints record)."""

    nn: NNParams | None = None
    siftflow: SiftFlowParams | None = None
    geometric: GeometricParams | None = None
    pseudo_gt: PseudoGTParams | None = None
    siamese: NetworkParams | None = None

    @classmethod
    def from_params(cls, values: dict, devices: dict | None = None) -> "MatcherSettings":
        """values: {'nn': {...}, 'siftflow': {...}, 'geometric': {...}, 'pseudo_gt': {...},
        'siamese': {...}} (any subset), each the config keys of that matcher (see common.smk's
        ``matcher_params``); devices: {'flow': ..., 'siamese': ...} (execution settings:
        'flow' for nearest neighbours and the pseudo ground truth, 'siamese' for the network;
        default 'auto')."""
        from .geometric import GeometricParams
        from .networks import NetworkParams
        from .nn import NNParams
        from .pseudo import PseudoGTParams
        from .siftflow import SiftFlowParams

        classes = {"nn": NNParams, "siftflow": SiftFlowParams, "geometric": GeometricParams,
                   "pseudo_gt": PseudoGTParams, "siamese": NetworkParams}
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


def _checkpoint(sp: MethodSpec, name: str, checkpoints: dict | None):
    ck = (checkpoints or {}).get(sp.checkpoint)
    if ck is None:
        raise SopcorrError(f"method {name}: the job was given no '{sp.checkpoint}' checkpoint")
    return ck


def _build_nn(name, sp, settings, checkpoints):
    from . import build

    descriptor = "features" if sp.variant == "raw" else "embedding"
    return build("nn", replace(_need(settings, "nn", name), descriptor=descriptor, mutual=False, labels=sp.labels,
                               refine="none"))


def _build_siftflow(name, sp, settings, checkpoints):
    from . import build

    descriptor = "sift" if sp.variant == "sift" else "features"
    return build("siftflow", replace(_need(settings, "siftflow", name), descriptor=descriptor))


def _build_geometric(name, sp, settings, checkpoints):
    from . import build

    p = _need(settings, "geometric", name)
    return build("geometric", replace(p, embedding_weight=0.0) if sp.variant == "raw" else p)


def _build_pseudo_gt(name, sp, settings, checkpoints):
    from .pseudo import build_pseudo_gt

    return build_pseudo_gt(_need(settings, "pseudo_gt", name))


def _build_network(name, sp, settings, checkpoints):
    from .networks import network_matcher

    return network_matcher(_checkpoint(sp, name, checkpoints), _need(settings, "siamese", name))


def _build_network_geometric(name, sp, settings, checkpoints):
    from . import build
    from .network_geometric import NetworkGeometricParams

    geometric = replace(_need(settings, "geometric", name), embedding_weight=0.0)
    net = _need(settings, "siamese", name)  # the device, and the run the network is evaluated in
    params = NetworkGeometricParams(geometric=geometric, device=net.device, backbone=net.backbone,
                                    input_size=net.input_size)
    return build("network_geometric", params, checkpoint=_checkpoint(sp, name, checkpoints))


#: method kind -> its builder ``(name, spec, settings, checkpoints) -> matcher``
BUILDERS = {"nn": _build_nn, "siftflow": _build_siftflow, "geometric": _build_geometric,
            "pseudo_gt": _build_pseudo_gt, "siamese": _build_network, "network_geometric": _build_network_geometric}


def build_matcher(name: str, settings: MatcherSettings, checkpoints: dict | None = None):
    """The matcher of method ``name`` (a SopcorrError when a setting or checkpoint it needs
    was not given)."""
    sp = _spec(name)
    return BUILDERS[sp.kind](name, sp, settings, checkpoints)


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
    variant; networks with identical encoders encode each image once,
    :func:`~sopcorr.matchers.networks.share_encoders`)."""
    from .networks import share_encoders

    cache: dict = {}
    out = [build_method(n, settings, frames, checkpoints, cache) for n in names]
    share_encoders(cache.values())
    return out


def method_descriptions() -> dict[str, str]:
    """{method name: one-line description} of every method of :data:`METHODS` (the report's
    front page and ``sopcorr match`` read them here)."""
    return {name: spec.description for name, spec in METHODS.items()}
