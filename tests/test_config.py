"""Config validation: defaults, and one clear message naming the key for each kind of error."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sopcorr.config import deep_merge, load_config, validate_config
from sopcorr.errors import ConfigError
from sopcorr.workflow_support import resolve_categories

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_validates_and_fills_defaults():
    cfg = load_config(ROOT / "config" / "config.yaml")
    assert cfg["run"] == "default"
    assert cfg["manifold"]["n_parts"] == 15
    # a key absent from config.yaml takes the schema default
    assert "max_iter" in cfg["manifold"]
    assert cfg["dataset"]["kind"] == "synthetic"


def test_paper_config_validates():
    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")
    assert cfg["backbone"]["name"] == "vgg16"
    assert cfg["dataset"]["kind"] == "voc_berkeley"


@pytest.mark.parametrize(
    "overlay, needle",
    [
        ({"manifold": {"n_part": 3}}, "manifold.n_part"),
        ({"bogus": 1}, "'bogus'"),
        ({"seed": "zero"}, "seed"),
        ({"manifold": {"n_parts": 1}}, "manifold.n_parts"),
        ({"backbone": {"name": "resnet"}}, "backbone.name"),
        ({"dataset": {"kind": "generic"}}, "dataset.path"),
        ({"siamese": {"paper": {"scale_range": [2.0, 0.9]}}}, "siamese.paper.scale_range"),
        ({"siamese": {"steps": 3}}, "siamese.steps: moved to siamese.paper.steps"),
        ({"siamese": {"lr": 0.1}}, "siamese.lr: moved to siamese.paper.lr"),
        ({"siamese": {"correlation": {"input_size": 64}}}, "unknown key 'siamese.correlation.input_size'"),
        ({"run": "a/b"}, "run"),
    ],
)
def test_bad_config_names_the_key(overlay, needle):
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    with pytest.raises(ConfigError) as exc:
        validate_config(deep_merge(base, overlay))
    msg = str(exc.value)
    assert needle in msg
    assert "\n" not in msg


def test_validation_does_not_share_default_objects():
    a = validate_config({})
    b = validate_config({})
    a["evaluate"]["pair_alphas"].append(0.5)
    assert b["evaluate"]["pair_alphas"] != a["evaluate"]["pair_alphas"]


def test_categories_subset_and_unknown(tmp_path):
    cfg = validate_config({"categories": ["bird"]})
    assert resolve_categories(cfg) == ["bird"]
    cfg = validate_config({"categories": ["zebra"]})
    with pytest.raises(ConfigError, match="zebra"):
        resolve_categories(cfg)


def test_generic_categories_read_from_json(tmp_path):
    (tmp_path / "dataset.json").write_text(
        '{"name": "x", "categories": {"b": {"keypoints": ["a"]}, "a": {"keypoints": ["a"]}}, "instances": ['
        '{"id": "b0", "image": "no_such.jpg", "category": "b", "keypoints": {}},'
        '{"id": "a0", "image": "no_such.jpg", "category": "a", "keypoints": {}}]}')
    cfg = validate_config({"dataset": {"kind": "generic", "path": str(tmp_path)}})
    assert resolve_categories(cfg) == ["a", "b"]


def test_snakemake_rejects_bad_config_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("manifold:\n  n_parts: -1\n")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--cores", "1", "--configfile", "config/config.yaml", str(bad)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() + proc.stdout.splitlines() if "manifold.n_parts" in l]
    assert len(lines) == 1, proc.stderr


def _schema_keys(props, prefix=""):
    for k, v in props.items():
        if v.get("type") == "object" and "properties" in v:
            yield from _schema_keys(v["properties"], prefix + k + ".")
        else:
            yield prefix + k


def test_every_schema_key_is_documented():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    doc = (ROOT / "config" / "README.md").read_text()
    missing = [k for k in _schema_keys(schema["properties"]) if f"`{k}`" not in doc]
    assert not missing, f"undocumented config keys: {missing}"
