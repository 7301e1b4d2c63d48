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
    validate_config(config)
    CATEGORIES = resolve_categories(config)
except SopcorrError as _err:
    # one line naming the key/file at fault, non-zero exit, before any job runs
    print(str(_err), file=sys.stderr)
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
