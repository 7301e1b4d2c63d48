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

wildcard_constraints:
    category="[A-Za-z0-9_-]+",


def results(*parts):
    """Path under results/<run>/."""
    return "/".join([RESULTS, *parts])


def per_category(pattern):
    """Expand a pattern with {category} over the configured categories."""
    return expand(pattern, category=CATEGORIES)


def dataset_json():
    """The dataset.json the prepare rule reads (generated for the synthetic kind)."""
    kind = config["dataset"]["kind"]
    if kind == "synthetic":
        return results("dataset", "dataset.json")
    if kind == "generic":
        return str(Path(config["dataset"]["path"]) / "dataset.json")
    return []
