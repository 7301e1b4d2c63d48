# Shared helpers: config validation (before any job runs), categories, paths.
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
    variant="paper|improved",


def results(*parts):
    """Path under results/<run>/."""
    return "/".join([RESULTS, *parts])


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


# ---- evaluation (used by evaluate.smk)
EVAL = config["evaluate"]
_KIND = config["dataset"]["kind"]
#: the dataset may have pairs (VOC/Berkeley has none); dense ground truth exists for synthetic data
EVAL_PAIRS = _KIND != "voc_berkeley"
EVAL_DENSE = _KIND == "synthetic"

#: inputs (besides the prepared instances and raw features) each method or descriptor needs
_METHOD_INPUTS = {
    "nn_embed": ["embed"], "nn_embed_labels": ["embed", "labels"], "pseudo_gt": ["embed"],
    "nn_embed_iter0": ["embed_iter0"], "ours_embed": ["embed"],
    "ours_siamese": ["siamese"], "ours_finetuned": ["finetuned"],
    "ours_geometric": ["embed"], "ours_geometric_prior": ["embed"],
}
_INPUT_PATHS = {  # the configured manifold variant's outputs feed the main tables
    "embed": results("manifold", VARIANT, "{category}", "embedded.zarr"),
    "embed_iter0": results("manifold", VARIANT, "{category}", "embedded_iter0.zarr"),
    "labels": results("manifold", VARIANT, "{category}", "labels.zarr"),
    "siamese": results("siamese", VARIANT, "model.pt"),
    "finetuned": results("siamese", VARIANT, "finetuned.pt"),
}


def eval_inputs(*method_lists):
    """Input dict of a per-category evaluation job for the union of the given methods."""
    needed = []
    for names in method_lists:
        for n in names:
            needed += _METHOD_INPUTS.get(n, [])
    out = {
        "instances": results("data", "{category}", "instances.json"),
        "features": results("features", "{category}.zarr"),
    }
    for k in dict.fromkeys(needed):
        out[k] = _INPUT_PATHS[k]
    return out


# ---- ablation (used by ablation.smk)
def ablation_inputs(wildcards):
    """Inputs of one category's ablation job: both variants' manifold and Siamese outputs."""
    cat = wildcards.category
    out = {
        "instances": results("data", cat, "instances.json"),
        "features": results("features", f"{cat}.zarr"),
    }
    for v in VARIANTS:
        out[f"embedded_{v}"] = results("manifold", v, cat, "embedded.zarr")
        out[f"labels_{v}"] = results("manifold", v, cat, "labels.zarr")
        out[f"model_{v}"] = results("siamese", v, "finetuned.pt")
    return out
