# Shared helpers: config validation (before any job runs), categories, paths.
import re
import sys
from pathlib import Path

_SRC = str(Path(workflow.basedir) / "src")
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

from sopcorr.config import validate_config
from sopcorr.errors import SopcorrError
from sopcorr.workflow_support import resolve_categories

try:
    # the schema, the cross-key rules and the backbone's layers (sopcorr.config)
    validate_config(config)
    # the categories; a generic dataset's dataset.json is validated here (JSON level, not the
    # images) with the loader's own message (sopcorr.workflow_support.check_dataset)
    CATEGORIES = resolve_categories(config)
except SopcorrError as _err:
    # one line naming the key/file at fault, printed once, non-zero exit, before any job runs
    print(str(_err), file=sys.stderr, flush=True)
    sys.exit(1)

RUN = config["run"]
RESULTS = f"results/{RUN}"
#: every stage's rules file appends the files `rule all` must produce
ALL_TARGETS = []

#: the manifold variant whose outputs feed the main tables ("ours" rows): paper | improved.
#: Stages that depend on it (manifold, flow, siamese) write under <stage>/<variant>/ so the
#: ablation target can hold both variants in one run.
VARIANT = config["manifold"]["variant"]
VARIANTS = ["paper", "improved"]


wildcard_constraints:
    category="[A-Za-z0-9_-]+",
    heldout="[A-Za-z0-9_-]+",
    variant="paper|improved",
    architecture="paper|correlation",
    round="[2-9]",


def results(*parts):
    """Path under results/<run>/."""
    return "/".join([RESULTS, *parts])


#: the results layout: the one place where the files stages hand each other are named
#: (relative to results/<run>/; {category}, {variant} are wildcards)
LAYOUT = {
    "instances": "data/{category}/instances.json",
    "features": "features/{category}.zarr",
    "embedding": "manifold/{variant}/{category}/embedded.zarr",
    "embedding_iter1": "manifold/{variant}/{category}/embedded_iter1.zarr",
    "labels": "manifold/{variant}/{category}/labels.zarr",
    "flow": "flow/{variant}/{category}.zarr",
    # rounds of self-training (siamese.rounds, siamese.smk): round 1's network is model_first,
    # trained on "flow"; round r > 1's trains on flow_round, made by round r - 1's network
    "model_first": "siamese/{variant}/model.pt",
    "flow_round": "flow/{variant}/round{round}/{category}.zarr",
    "model_round": "siamese/{variant}/round{round}/model.pt",
    "finetuned": "siamese/{variant}/finetuned.pt",
    # the generalisation protocols (generalisation.smk): the leave-one-category-out network that
    # never saw {category} (its rounds' flows of the other categories under without_{heldout});
    # under the inductive scope, the evaluation's instances (every image, the pairs among the
    # held-out half) and every image embedded with the fit half's manifold
    "model_without_first": "siamese/{variant}/without_{category}/model.pt",
    "model_without_round": "siamese/{variant}/without_{category}/round{round}/model.pt",
    "flow_without_round": "flow/{variant}/without_{heldout}/round{round}/{category}.zarr",
    "evaluation": "data/{category}/evaluation.json",
    "embedding_all": "manifold/{variant}/{category}/embedded_all.zarr",
}
#: rounds of self-training; "model" / "model_without" are the last round's network (what every
#: ours_network* row, the fine-tuning, the figures and `sopcorr match --run` read)
ROUNDS = config["siamese"]["rounds"]
for _k in ("model", "model_without"):
    LAYOUT[_k] = (
        LAYOUT[f"{_k}_first"]
        if ROUNDS == 1
        else LAYOUT[f"{_k}_round"].replace("{round}", str(ROUNDS))
    )
#: the ablation's network of every round (methods ours_network_round<r>)
for _r in range(1, ROUNDS + 1):
    LAYOUT[f"model_round{_r}"] = (
        LAYOUT["model_first"]
        if _r == 1
        else LAYOUT["model_round"].replace("{round}", str(_r))
    )
#: the inductive protocol's fitted artifacts live under results/<run>/<INDUCTIVE>/ in the same
#: layout as the run's (layout(kind, scope=INDUCTIVE)): the fit half's instances and features,
#: the manifold, pseudo flow and network fitted on them
INDUCTIVE = "inductive"
#: the ablation's network of each architecture: the configured one is the run's network, the
#: other is trained for the ablation only (rules train/finetune_siamese_architecture)
SIAMESE_ARCH = config["siamese"]["architecture"]
#: (the configured one is the run's last round; the other is trained one round)
for _arch in ("paper", "correlation"):
    for _k in ("model", "finetuned"):
        LAYOUT[f"{_k}_{_arch}"] = (
            LAYOUT[_k]
            if _arch == SIAMESE_ARCH
            else f"siamese/{{variant}}/architecture_{_arch}/{_k}.pt"
        )


def layout(kind, scope=None, run=None, **wildcards):
    """results/<run>/[<scope>/]<LAYOUT[kind]> with the given wildcards filled (others stay
    wildcards); ``run``: another run's folder (results/<run>/), e.g. evaluate.transfer_from.
    """
    path = LAYOUT[kind]
    for k, v in wildcards.items():
        path = path.replace(f"{{{k}}}", str(v))
    base = f"results/{run}" if run else RESULTS
    return "/".join([base, *([scope] if scope else []), path])


def per_category(pattern, **wildcards):
    """Expand a pattern with {category} over the configured categories (other wildcards, such
    as variant, may be given; unknown ones stay as wildcards)."""
    return expand(pattern, category=CATEGORIES, allow_missing=True, **wildcards)


def variant_section(section, variant):
    """config[section] with ``variant`` set (the manifold section carries the variant)."""
    out = dict(config[section])
    if section == "manifold":
        out["variant"] = variant
    return out


def dataset_json():
    """The dataset.json the prepare rule reads (generated for the synthetic kind)."""
    kind = config["dataset"]["kind"]
    if kind == "synthetic":
        return results("dataset", "dataset.json")
    if kind == "generic":
        return str(Path(config["dataset"]["path"]) / "dataset.json")
    return []


# ---- matchers: each job's params are exactly the config keys its matchers use
from sopcorr.matchers.methods import METHODS, method_inputs, method_kinds

_FLOW = config["flow"]
_SIFTFLOW_KEYS = [k for k in _FLOW if k.startswith("siftflow_")]


def geometric_keys(fb=False):
    """The flow.geometric keys of the geometric matcher (fb: with the pseudo ground truth's
    fb_tolerance) and the seed (RANSAC)."""
    g = {k: v for k, v in _FLOW["geometric"].items() if fb or k != "fb_tolerance"}
    return {**g, "seed": config["seed"]}


def pseudo_gt_params(variant):
    """Settings of the pseudo-ground-truth matcher of ``variant`` (sopcorr.matchers.pseudo):
    the keys that variant's matcher reads, and no others."""
    if variant == "improved":
        return {"variant": "improved", "geometric": geometric_keys(fb=True)}
    out = {
        "variant": "paper",
        "method": _FLOW["pseudo_method"],
        "mutual": _FLOW["mutual"],
        "min_similarity": _FLOW["min_similarity"],
    }
    if _FLOW["pseudo_method"] == "siftflow":
        out["siftflow"] = {k: _FLOW[k] for k in _SIFTFLOW_KEYS}
    else:
        out["refine"] = _FLOW["refine"]
    return out


#: the round teacher of pseudo_flow_round: the method, its forward-backward
#: tolerance and the matcher keys it reads
_ROUND_TEACHER = config["siamese"]["round_teacher"]


def round_teacher_params():
    """What makes round r > 1's pseudo ground truth: siamese.round_teacher, the forward-backward
    tolerance and exactly the matcher keys that method reads (sopcorr.matchers.pseudo).
    """
    return {
        "method": _ROUND_TEACHER,
        "fb_tolerance": _FLOW["geometric"]["fb_tolerance"],
        "matchers": matcher_params([_ROUND_TEACHER]),
    }


def round_model(round_, scope=None, without=False, **wildcards):
    """The network of round ``round_`` (1: model_first) under ``scope``; ``without``: the
    leave-one-out network that never saw {category} (or the category given)."""
    kind = "model_without" if without else "model"
    if int(round_) == 1:
        return layout(f"{kind}_first", scope, **wildcards)
    return layout(f"{kind}_round", scope, round=round_, **wildcards)


def previous_model(scope=None, without=False, category="category"):
    """Input function: the network of the round before {round} (the round teacher's checkpoint);
    ``category``: the wildcard that names the left-out category (leave-one-out networks).
    """

    def inner(wc):
        extra = {"category": getattr(wc, category)} if without else {}
        return round_model(
            int(wc.round) - 1, scope, without, variant=wc.variant, **extra
        )

    return inner


def round_start(scope=None, without=False):
    """Input function: the weights round {round} starts from (siamese.round_start: previous),
    or none (afresh)."""
    if config["siamese"]["round_start"] == "afresh":
        return lambda wc: []
    return previous_model(scope, without)


def round_flows(scope=None):
    """Input function: every category's pseudo flow of round {round} under ``scope``."""
    return lambda wc: [
        layout("flow_round", scope, category=c, round=wc.round, variant=wc.variant)
        for c in CATEGORIES
    ]


def last_round_flows(scope=None):
    """Every category's pseudo flow of the last round (the fine-tuning's pairs)."""
    if ROUNDS == 1:
        return per_category(layout("flow", scope))
    return per_category(layout("flow_round", scope, round=ROUNDS))


def round_targets(scope=None):
    """The network of every round > 1 under ``scope`` (rule all)."""
    return [layout("model_round", scope, round=r) for r in range(2, ROUNDS + 1)]


def cycle_min_params():
    """The training jobs' cycle setting, only when it is on (flow.cycle_min > 0) and the
    configured network reads it (the correlation network; the paper's flow network trains on
    every valid cell): the teacher's cells confirmed by at least that many hubs; nothing
    otherwise (the params of before).
    """
    on = _FLOW["cycle_min"] and config["siamese"]["architecture"] == "correlation"
    return {"cycle_min": _FLOW["cycle_min"]} if on else {}


def cycle_params():
    """The cycle confirmation's settings (sopcorr.flow.cycle) as the rule pseudo_flow's params,
    only when it is on (flow.cycle_images > 0): {'cycle': {'cycle_images', 'cycle_tolerance'}};
    nothing when it is off, so a run without it keeps the params (and the jobs) of before.
    """
    if not _FLOW["cycle_images"]:
        return {}
    return {
        "cycle": {
            "cycle_images": _FLOW["cycle_images"],
            "cycle_tolerance": _FLOW["cycle_tolerance"],
        }
    }


def execution_devices(wildcards, resources):
    """The devices a job's matchers and backbones run on ({'flow', 'siamese', 'backbone'}).
    They change no result, only speed: a params function that takes ``resources`` is a
    derived param, which Snakemake never counts as a rerun trigger, so changing a device
    reruns nothing."""
    return {
        "flow": _FLOW["device"],
        "siamese": config["siamese"]["device"],
        "backbone": config["backbone"]["device"],
    }


def matcher_params(methods, variant=VARIANT, network_run=None):
    """The ``matchers`` params entry of a job running ``methods`` (sopcorr.matchers.methods:
    MatcherSettings.from_params): per matcher kind in use, exactly the keys it reads (devices
    come apart, from execution_devices). ``network_run``: the backbone and input size a network
    of another run is evaluated at (evaluate.transfer_from; None: the run's own network).
    """
    kinds = method_kinds(methods)
    out = {}
    if "nn" in kinds:
        out["nn"] = {}
    if "siftflow" in kinds:
        out["siftflow"] = {k: _FLOW[k] for k in _SIFTFLOW_KEYS}
        if any(METHODS[m].kind == "siftflow" and METHODS[m].image for m in methods):
            out["siftflow"]["siftflow_radius"] = config["evaluate"]["siftflow_radius"]
    if kinds & {"geometric", "network_geometric"}:
        out["geometric"] = geometric_keys()
    if "pseudo_gt" in kinds:
        out["pseudo_gt"] = pseudo_gt_params(variant)
    if kinds & {"siamese", "network_geometric"}:
        out["siamese"] = dict(network_run or {})
    return out


def matcher_inputs(methods, variant=VARIANT, suffix=""):
    """Input files (name -> path) the ``methods`` read besides instances and raw features:
    'embedding', 'embedding_iter1', 'labels', 'model', 'finetuned' (+ ``suffix``)."""
    return {f"{k}{suffix}": layout(k, variant=variant) for k in method_inputs(methods)}


# ---- evaluation (used by evaluate.smk)
EVAL = config["evaluate"]
_KIND = config["dataset"]["kind"]
#: the dataset may have pairs (VOC/Berkeley has none); dense ground truth exists for synthetic data
EVAL_PAIRS = _KIND != "voc_berkeley"
EVAL_DENSE = _KIND == "synthetic"
from sopcorr.evaluate.classify import DESCRIPTOR_METHODS


def descriptor_methods(descriptors):
    """The methods whose descriptors Table 1's ``descriptors`` use."""
    return [DESCRIPTOR_METHODS[d] for d in descriptors if d in DESCRIPTOR_METHODS]


def conv_params(descriptors):
    """The backbone keys of Table 1's conv4/conv5 rows (empty when they are not asked for)."""
    if not {"conv4", "conv5"} & set(descriptors):
        return {}
    bb = config["backbone"]
    return {
        "backbone": bb["name"],
        "layers": EVAL["conv_layers"],
        "weights": bb["weights"],
        "relu": bb["relu"],
    }


def table_note_params(table):
    """The config keys a table's notes quote (sopcorr.evaluate.tables.table_notes)."""
    keys = {
        "keypoint_classification": ["crop_size", "conv_layers", "k_neighbors"],
        "keypoint_pck": ["alpha", "k_neighbors"],
        "dense_synthetic": ["dense_stride"],
    }.get(table, [])
    out = {k: EVAL[k] for k in keys}
    if table == "keypoint_classification":
        out["backbone"] = config["backbone"]["name"]
    return out


def eval_inputs(methods):
    """Input dict of a per-category evaluation job running ``methods``."""
    return {
        "instances": layout("instances"),
        "features": layout("features"),
        **matcher_inputs(methods),
    }


def _union(*groups):
    out = []
    for g in groups:
        out += [m for m in g if m not in out]
    return out


#: every method the per-category evaluation job runs (sopcorr.evaluate.protocols)
EVAL_METHODS = _union(
    EVAL["localisation_methods"],
    EVAL["pair_methods"] if EVAL_PAIRS else [],
    EVAL["dense_methods"] if EVAL_DENSE else [],
    EVAL["figure_methods"],
    descriptor_methods(EVAL["classification_descriptors"]),
)


def evaluation_protocols():
    """The ``protocols`` params of the evaluate rule, per protocol exactly the config keys it uses
    (pairs / dense only where the dataset has pairs / dense ground truth;
    sopcorr.evaluate.protocols.CategoryEvaluation.from_params)."""
    descriptors = EVAL["classification_descriptors"]
    out = {
        "keypoints": {
            "methods": EVAL["localisation_methods"],
            "k_neighbors": EVAL["k_neighbors"],
            "alpha": EVAL["alpha"],
            "prior_sigma_min": EVAL["prior_sigma_min"],
            "vote_sigma": EVAL["vote_sigma"],
            "threshold_queries": EVAL["threshold_queries"],
        },
        "classify": {
            "descriptors": descriptors,
            "sift_radii": EVAL["sift_radii"] if "sift" in descriptors else [],
            "conv": conv_params(descriptors),
            "crop_size": EVAL["crop_size"],
            "svm_c": EVAL["svm_c"],
        },
        "figures": {
            "methods": EVAL["figure_methods"],
            "n_pairs": EVAL["figures_per_category"],
        },
    }
    if EVAL_PAIRS:
        out["pairs"] = {
            "methods": EVAL["pair_methods"],
            "alphas": EVAL["pair_alphas"],
            "max_pairs": EVAL["max_eval_pairs"],
        }
    if EVAL_DENSE:
        out["dense"] = {
            "methods": EVAL["dense_methods"],
            "alphas": EVAL["dense_alphas"],
            "stride": EVAL["dense_stride"],
            "max_pairs": EVAL["max_eval_pairs"],
        }
    return out


# ---- ablation (used by ablation.smk)
#: the ablation's stages of each variant (sopcorr.evaluate.ablation)
from sopcorr.evaluate.ablation import variant_stages

ABLATION_STAGES = {v: variant_stages(v, ROUNDS) for v in VARIANTS}


def ablation_inputs(wildcards):
    """Inputs of one category's ablation job: both variants' manifold and Siamese outputs
    (the files its stages read, suffixed _<variant>)."""
    out = {
        "instances": layout("instances", category=wildcards.category),
        "features": layout("features", category=wildcards.category),
    }
    for v in VARIANTS:
        for k, path in matcher_inputs(ABLATION_STAGES[v], v, f"_{v}").items():
            out[k] = path.replace("{category}", wildcards.category)
    return out


def ablation_matchers():
    """The ablation job's matcher settings per variant."""
    return {v: matcher_params(ABLATION_STAGES[v], v) for v in VARIANTS}


def architecture_settings(finetune):
    """The siamese settings of the ablation's network of architecture {architecture} (rules
    train/finetune_siamese_architecture)."""
    from sopcorr.workflow_support import siamese_settings

    return lambda wildcards: siamese_settings(
        config["siamese"], finetune=finetune, architecture=wildcards.architecture
    )


# ---- viewer (used by viewer.smk)
VIEWER = config["viewer"]


def viewer_inputs(methods):
    """Inputs of the viewer job (one job for every category): per category, as lists in
    CATEGORIES order, the instances, raw features, the manifold's part labels (labels.zarr) and
    the stores ``methods`` read; the checkpoints they read once."""
    out = {
        "instances": per_category(layout("instances")),
        "features": per_category(layout("features")),
        "labels": per_category(layout("labels", variant=VARIANT)),
    }
    for k, path in matcher_inputs(methods).items():
        out[k] = per_category(path) if "{category}" in path else path
    return out


# ---- generalisation protocols (used by generalisation.smk; sopcorr.evaluate.generalisation)
from sopcorr.evaluate.generalisation import PROTOCOL_METHODS, leave_one_out
from sopcorr.workflow_support import check_transfer_source

#: evaluate.transfer_from: the run whose network tables/transfer_from_<source>.csv evaluates
TRANSFER_FROM = EVAL["transfer_from"]
try:
    # a source run of another backbone: one line before any job runs (when its features exist)
    check_transfer_source(config, Path("results"))
except SopcorrError as _err:
    print(str(_err), file=sys.stderr, flush=True)
    sys.exit(1)
#: the protocols whose tables this run can build (leave-one-out needs two categories)
PROTOCOL_TABLES = ["inductive"] + (["transfer"] if len(CATEGORIES) > 1 else [])
if TRANSFER_FROM:
    PROTOCOL_TABLES.append(f"transfer_from_{TRANSFER_FROM}")
#: protocol tables this run cannot build (protocol_unavailable says why in one line):
#: transfer_from_<source> for a source other than evaluate.transfer_from (protocol_table wins
#: for the configured one), transfer with one category
PROTOCOL_UNAVAILABLE = "transfer_from_[A-Za-z0-9_.-]+" + (
    "" if len(CATEGORIES) > 1 else "|transfer"
)
#: menu titles of the protocol tables (report)
PROTOCOL_TITLES = {
    "inductive": "Inductive: held-out half of each category",
    "transfer": "Leave one category out",
    "transfer_from": "Another run's network",
}
#: the settings a network of another run is evaluated with: this run's backbone and input size
TRANSFER_NETWORK = {
    "backbone": config["backbone"]["name"],
    "input_size": config["backbone"]["input_size"],
}


def protocol_inputs(protocol):
    """Input dict of one category's records of ``protocol`` (inductive, transfer,
    transfer_from): the evaluation's instances and stores with the protocol's network.
    """
    out = eval_inputs(PROTOCOL_METHODS[protocol])
    if protocol == "inductive":
        out["instances"] = layout("evaluation", scope=INDUCTIVE)
        out["embedding"] = layout("embedding_all", scope=INDUCTIVE, variant=VARIANT)
        out["model"] = layout("model", scope=INDUCTIVE, variant=VARIANT)
    elif protocol == "transfer":
        out["model"] = layout("model_without", variant=VARIANT)
    else:
        out["model"] = layout("model", run=TRANSFER_FROM, variant=VARIANT)
    return out


def leave_one_out_inputs(kind):
    """Input function of the leave-one-out network's training: the ``kind`` files
    ('features', 'flow', 'instances') of every category but {category}."""
    return lambda wc: [
        layout(kind, category=c, variant=wc.variant)
        for c in leave_one_out(CATEGORIES, wc.category)
    ]


def leave_one_out_round_flows():
    """Input function of round {round}'s leave-one-out network: the round's flows of every
    category but {category}, made by the network that never saw {category}."""
    return lambda wc: [
        layout(
            "flow_without_round",
            heldout=wc.category,
            category=c,
            round=wc.round,
            variant=wc.variant,
        )
        for c in leave_one_out(CATEGORIES, wc.category)
    ]


def protocol_note_params(protocol):
    """The values a protocol table's notes quote (sopcorr.evaluate.tables.table_notes)."""
    if protocol == "inductive":
        return {"seed": config["seed"]}
    if protocol.startswith("transfer_from_"):
        return {"source": TRANSFER_FROM, "input_size": TRANSFER_NETWORK["input_size"]}
    return {}


def protocol_title(protocol):
    """The report's menu title of a protocol table."""
    kind = "transfer_from" if protocol.startswith("transfer_from_") else protocol
    title = PROTOCOL_TITLES[kind]
    return f"{title} ({TRANSFER_FROM})" if kind == "transfer_from" else title


def protocol_unavailable_message(table):
    """Why tables/<table>.csv cannot be built in this run (one line)."""
    if table == "transfer":
        return (
            f"{results('tables', 'transfer.csv')}: leaving one category out needs at least 2 "
            f"categories; this run has 1 ({CATEGORIES[0]}): the table is not written"
        )
    source = table[len("transfer_from_") :]
    return (
        f"{results('tables', table + '.csv')}: evaluate.transfer_from is "
        f"{TRANSFER_FROM or 'null'}; set evaluate.transfer_from: {source} (an overlay "
        f"--configfile) to evaluate run '{source}'s network on this run's pairs"
    )
