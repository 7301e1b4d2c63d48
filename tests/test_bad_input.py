"""Bad input (issue 7, item 5): each defect gives a one-line error naming the file or field, a
non-zero exit, and no half-written artifact. Snakemake runs on a generic dataset built in a temp
folder (tests/integration/helpers.py: write_generic_dataset) with the tiny config.

Each case mutates the dataset or the config and checks
- the exit status is non-zero,
- one output line matches the case's pattern (the file / instance / field at fault),
- no Python traceback is shown (a SopcorrError is reported as one line),
- the faulty category's artifact does not exist and no temporary of an atomic write is left.
Defects that the workflow catches at parse time (stage ``parse``: the config, and the dataset
at the JSON level) must fail the parse itself, before any job: all of them are parsed in one
process (tests/integration/dryrun_many.py). The others run the first rules that read the
faulty input (stage ``data`` or ``features``) with the ``snakemake`` command.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from integration.helpers import (JSON_DEFECTS, TINY, copy_workflow, dry_runs, leftover_temporaries, run_snakemake,
                                 write_dataset_json, write_generic_dataset)

pytestmark = pytest.mark.slow

RUN = "bad"


def _missing_image(root, data, cfg):
    (root / data["instances"][1]["image"]).unlink()
    return r"images/bird/0001\.jpg.*(not found|no such)"


def _corrupt_image(root, data, cfg):
    (root / data["instances"][1]["image"]).write_bytes(b"this is not a JPEG\n" * 4)
    return r"images/bird/0001\.jpg.*(corrupt|unreadable|cannot identify)"


def _keypoint_outside(root, data, cfg):
    data["instances"][1]["keypoints"]["head"] = [500.0, 10.0, 1]
    return r"bird/0001.*keypoints\.head.*outside"


def _json_defect(name: str, pattern: str):
    """A case from the shared JSON-level dataset defects (integration.helpers.JSON_DEFECTS)."""
    def mutate(root, data, cfg):
        JSON_DEFECTS[name](data)
        return pattern

    return mutate


_bbox_inverted = _json_defect("bbox_inverted", r"bird/0001.*bbox.*inverted")
_duplicate_ids = _json_defect("dup_ids", r"bird/0001.*duplicate instance id|duplicate instance id.*bird/0001")
_unknown_category_in_pairs = _json_defect("pair_unknown", r"dog/0000.*pairs|pairs.*dog/0000")
_empty_category = _json_defect("empty_category", r"fish")


def _wrong_type_in_config(root, data, cfg):
    cfg["manifold"]["n_parts"] = "fifteen"
    return r"manifold\.n_parts.*fifteen|fifteen.*manifold\.n_parts"


def _unknown_backbone(root, data, cfg):
    cfg["backbone"]["name"] = "resnet50"
    return r"backbone\.name.*resnet50|resnet50.*backbone\.name"


def _vgg16_weights_missing_offline(root, data, cfg):
    cfg["backbone"].update(name="vgg16", weights=None, layers=None)
    return r"(?i)vgg16.*weights|weights.*vgg16"


def _vgg16_weights_file_missing(root, data, cfg):
    cfg["backbone"].update(name="vgg16", weights=str(root / "no_such_vgg16.pth"), layers=None)
    return r"no_such_vgg16\.pth"


CASES = {
    "missing_image": (_missing_image, "data"),
    "corrupt_image": (_corrupt_image, "data"),
    "keypoint_outside_image": (_keypoint_outside, "data"),
    "bbox_inverted": (_bbox_inverted, "parse"),
    "duplicate_instance_ids": (_duplicate_ids, "parse"),
    "unknown_category_in_pairs": (_unknown_category_in_pairs, "parse"),
    "empty_category": (_empty_category, "parse"),
    "wrong_type_in_config": (_wrong_type_in_config, "parse"),
    "unknown_backbone": (_unknown_backbone, "parse"),
    "vgg16_weights_missing_offline": (_vgg16_weights_missing_offline, "features"),
    "vgg16_weights_file_missing": (_vgg16_weights_file_missing, "features"),
}


def _targets(stage: str, cats=("bird", "car")) -> list[str]:
    if stage == "data":
        return [f"results/{RUN}/data/{c}/instances.json" for c in cats]
    return [f"results/{RUN}/features/{c}.zarr" for c in cats]


def _bad_case(case: str, tmp: Path) -> tuple[dict, str]:
    """The case's dataset under ``tmp/dataset`` and its overlay config; (overlay, pattern)."""
    mutate, _ = CASES[case]
    root = tmp / "dataset"
    data = write_generic_dataset(root)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["run"] = RUN
    cfg["dataset"] = {"kind": "generic", "path": str(root)}
    pattern = mutate(root, data, cfg)
    write_dataset_json(root, data)
    return cfg, pattern


def _assert_one_line(out: str, pattern: str, case: str) -> None:
    rx = re.compile(pattern)
    matching = [line for line in out.splitlines() if rx.search(line)]
    assert matching, f"no line matches {pattern!r}:\n{out[-3000:]}"
    print(f"{case}: {matching[0]}")
    assert "Traceback (most recent call last)" not in out, out[-3000:]


PARSE_CASES = sorted(c for c, (_, stage) in CASES.items() if stage == "parse")
JOB_CASES = sorted(c for c, (_, stage) in CASES.items() if stage != "parse")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """{case: (dry-run result, pattern)} of every parse-time case, parsed in one process."""
    tmp = tmp_path_factory.mktemp("bad_parse")
    wd = copy_workflow(tmp / "wf")
    overlays, patterns = {}, {}
    for case in PARSE_CASES:
        (tmp / case).mkdir()
        overlays[case], patterns[case] = _bad_case(case, tmp / case)
    out = dry_runs(wd, overlays)
    assert not (wd / "results").exists(), "a parse-time defect let a job run"
    return {c: (out[c], patterns[c]) for c in PARSE_CASES}


@pytest.mark.parametrize("case", PARSE_CASES)
def test_bad_input_fails_the_parse_with_one_line_naming_the_fault(case, parsed):
    result, pattern = parsed[case]
    assert result["exit"] == 1, result["error"]
    _assert_one_line(result["output"], pattern, case)


@pytest.mark.parametrize("case", JOB_CASES)
def test_bad_input_fails_with_one_line_naming_the_fault(case, tmp_path):
    _, stage = CASES[case]
    wd = copy_workflow(tmp_path / "wf")
    cfg, pattern = _bad_case(case, tmp_path)
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump(cfg))
    # an empty torch cache: nothing can be found or downloaded there
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()

    # only the faulty category's first artifact: the defects are in bird (or the whole file)
    proc = run_snakemake(wd, targets=_targets(stage, ["bird"]), configfiles=[TINY, overlay], check=False,
                         env_extra={"TORCH_HOME": str(torch_home)})
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    _assert_one_line(out, pattern, case)
    res = wd / "results" / RUN
    assert not (res / _targets(stage, ["bird"])[0].split(f"results/{RUN}/", 1)[1]).exists()
    assert leftover_temporaries(wd / "results") == []
