"""Validation before any job runs (issue 12, Build 4): the backbone's layers are checked by
``validate_config`` and a generic dataset's ``dataset.json`` is checked at the JSON level at parse
time, so ``snakemake -n`` fails with one line (the loader's own message) and no traceback."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from integration.helpers import JSON_DEFECTS, copy_workflow, dry_runs, write_dataset_json, write_generic_dataset
from sopcorr.config import validate_config
from sopcorr.data.generic import load_dataset
from sopcorr.errors import ConfigError, DatasetError
from sopcorr.workflow_support import check_dataset, resolve_categories


# ---------------------------------------------------------------- the backbone, in validate_config
@pytest.mark.parametrize("backbone, needle", [
    ({"layers": ["block99"]}, r"backbone\.layers: unknown layer 'block99'"),
    ({"name": "vgg16", "layers": ["conv6"]}, r"backbone\.layers: unknown layer 'conv6'"),
    ({"layers": ["stage6"], "input_size": 100}, r"backbone\.input_size: 100 must be a multiple of 32"),
])
def test_validate_config_checks_the_backbone_layers(backbone, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        validate_config({"backbone": backbone})
    assert "\n" not in str(exc.value)


def test_shipped_configs_pass_the_backbone_check():
    from sopcorr.config import load_config

    root = Path(__file__).resolve().parents[1]
    for overlay in sorted((root / "config").glob("*.yaml")):
        files = [root / "config" / "config.yaml"] + ([overlay] if overlay.name != "config.yaml" else [])
        load_config(*files)


# ---------------------------------------------------------------- the dataset, at the JSON level
@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic")
    return root, write_generic_dataset(root)


def _config(root) -> dict:
    return validate_config({"dataset": {"kind": "generic", "path": str(root)}})


def _broken_copy(generic, tmp_path, mutate) -> Path:
    root, data = generic
    data = json.loads(json.dumps(data))
    mutate(data)
    # image paths resolve against the JSON's folder: point them at the generated images
    write_dataset_json(tmp_path, {**data, "root": str(root)})
    return tmp_path


def test_a_valid_dataset_passes_without_opening_images(generic, tmp_path):
    root, data = generic
    write_dataset_json(tmp_path, {**data, "root": str(tmp_path / "no_images_here")})
    ds = check_dataset(_config(tmp_path))
    assert sorted(ds.categories) == ["bird", "car"] and len(ds.instances) == len(data["instances"])
    assert resolve_categories(_config(tmp_path)) == ["bird", "car"]


def test_other_kinds_are_not_read_at_parse_time():
    assert check_dataset(validate_config({})) is None


@pytest.mark.parametrize("defect", sorted(JSON_DEFECTS))
def test_json_defects_fail_at_parse_time_with_the_loaders_message(generic, tmp_path, defect):
    root = _broken_copy(generic, tmp_path, JSON_DEFECTS[defect])
    with pytest.raises(DatasetError) as loader:
        load_dataset(root / "dataset.json", check_images=True)
    with pytest.raises(DatasetError) as parse_time:
        resolve_categories(_config(root))
    assert str(parse_time.value) == str(loader.value)
    assert "\n" not in str(parse_time.value)


def test_missing_dataset_json_names_the_config_key(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset\.json not found \(dataset\.path: "):
        check_dataset(_config(tmp_path / "nowhere"))


# ---------------------------------------------------------------- snakemake -n: one line, exit 1
_SNAKEMAKE_NOTE = re.compile(r"^Config file \S+ is extended by additional config")
#: the dataset defects also checked through the workflow's parse
WORKFLOW_DEFECTS = ["dup_ids", "pair_unknown", "empty_category"]


@pytest.fixture(scope="module")
def parse_failures(generic, tmp_path_factory):
    """The workflow's parse (``snakemake -n`` through Snakemake's API, all cases in one process:
    tests/integration/dryrun_many.py) on a bad backbone layer and on broken datasets: {case:
    (result, the line expected)}."""
    tmp = tmp_path_factory.mktemp("parse_failures")
    wd = copy_workflow(tmp / "wf")
    cases, expected = {}, {}
    with pytest.raises(ConfigError) as exc:
        validate_config({"backbone": {"layers": ["block99"]}})
    cases["block99"], expected["block99"] = {"backbone": {"layers": ["block99"]}}, str(exc.value)
    for defect in WORKFLOW_DEFECTS:
        (tmp / defect).mkdir()
        root = _broken_copy(generic, tmp / defect, JSON_DEFECTS[defect])
        with pytest.raises(DatasetError) as loader:
            load_dataset(root / "dataset.json")
        cases[defect] = {"run": "bad", "dataset": {"kind": "generic", "path": str(root)}}
        expected[defect] = str(loader.value)
    out = dry_runs(wd, cases)
    assert not (wd / "results").exists()  # nothing was run or written
    return {k: (out[k], expected[k]) for k in cases}


def _fails_with_one_line(result, expected: str):
    out = result["output"]
    assert result["exit"] == 1, (result["error"], out[-3000:])
    assert "Traceback" not in out and "Exception" not in out, out[-3000:]
    # the whole output is the error, once (besides Snakemake's note that an overlay was given)
    lines = [line for line in out.splitlines() if line.strip() and not _SNAKEMAKE_NOTE.match(line)]
    assert lines == [expected], out[-3000:]


@pytest.mark.slow
def test_snakemake_dry_run_rejects_an_unknown_backbone_layer(parse_failures):
    _fails_with_one_line(*parse_failures["block99"])


@pytest.mark.slow
@pytest.mark.parametrize("defect", WORKFLOW_DEFECTS)
def test_snakemake_dry_run_rejects_a_broken_dataset(parse_failures, defect):
    _fails_with_one_line(*parse_failures[defect])
