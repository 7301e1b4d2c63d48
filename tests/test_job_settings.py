"""The settings the data, features and manifold rules pass as params (sopcorr.workflow_support):
each job sees the keys that change its result, and the library builds the same parameters from
them as from the whole section."""
import dataclasses

import pytest

from sopcorr.config import validate_config
from sopcorr.data.prepare import source_dataset
from sopcorr.manifold.refine import ManifoldParams
from sopcorr.workflow_support import (BACKBONE_RUNTIME_KEYS, backbone_settings, manifold_settings,
                                      prepare_settings)

#: every manifold.improved key at a value different from its default
IMPROVED = {"posterior_temperature": 2.5, "uniform_prior": False, "min_part_fraction": 0.03,
            "anchor_weight": 0.7, "pairwise": "metric", "subclasses": 4, "n_components": 12,
            "raw_weight": 0.2, "recluster_until": 2}
TOP = {"n_parts": 7, "n_components": 9, "subclasses": 5, "pairwise": "paper", "tol": 0.02, "max_iter": 3}


@pytest.mark.parametrize("variant", ["paper", "improved"])
@pytest.mark.parametrize("improved", [{}, IMPROVED, {"subclasses": None, "n_components": None}])
def test_manifold_settings_build_the_same_params_as_the_section(variant, improved):
    section = validate_config({"manifold": {**TOP, "variant": variant, "improved": improved}})["manifold"]
    flat = manifold_settings(section, variant)
    assert "variant" not in flat and "improved" not in flat
    assert set(flat) <= {f.name for f in dataclasses.fields(ManifoldParams)}
    assert ManifoldParams.from_config(flat, seed=3, category="bird") == \
        ManifoldParams.from_config(section, seed=3, category="bird")


def test_a_variants_job_does_not_see_the_other_variants_keys():
    base = validate_config({"manifold": dict(TOP)})["manifold"]
    changed_improved = validate_config({"manifold": {**TOP, "improved": IMPROVED}})["manifold"]
    assert manifold_settings(base, "paper") == manifold_settings(changed_improved, "paper")
    # the improved variant overrides subclasses / n_components / pairwise: the top-level ones are unseen
    top_changed = validate_config({"manifold": {**TOP, "subclasses": 6, "pairwise": "metric",
                                                "improved": IMPROVED}})["manifold"]
    assert manifold_settings(changed_improved, "improved") == manifold_settings(top_changed, "improved")
    assert manifold_settings(base, "improved") != manifold_settings(changed_improved, "improved")


def test_backbone_settings_leave_out_runtime_knobs_only():
    bb = validate_config({})["backbone"]
    out = backbone_settings(bb)
    assert set(out) == set(bb) - set(BACKBONE_RUNTIME_KEYS)
    assert set(BACKBONE_RUNTIME_KEYS) == {"device", "batch_size"}


def test_prepare_settings_per_kind(tmp_path):
    syn = validate_config({"dataset": {"voc": {"voc_url": "x"}}})["dataset"]
    assert prepare_settings(syn) == {"kind": "synthetic", "train_fraction": 0.8}
    voc = validate_config({"dataset": {"kind": "voc_berkeley", "voc": {"voc_url": "x"}}})["dataset"]
    out = prepare_settings(voc)
    assert set(out["voc"]) == {"voc_root", "keypoints_root", "include_truncated", "include_difficult",
                               "max_instances_per_category"}
    # the reader gets everything it needs from the settings alone (a missing folder is its error)
    from sopcorr.errors import DatasetError
    out["voc"]["voc_root"] = str(tmp_path / "no_voc")
    with pytest.raises(DatasetError, match="no_voc"):
        source_dataset(out, None, categories=["cat"])


def test_settings_do_not_depend_on_the_order_configs_were_merged():
    from sopcorr.config import deep_merge
    from sopcorr.workflow_support import stable

    a = validate_config({"manifold": {"pairwise": "metric"}})
    b = validate_config(deep_merge({"manifold": {"n_parts": 15}}, {"manifold": {"pairwise": "metric"}}))
    b["manifold"] = {k: b["manifold"][k] for k in reversed(list(b["manifold"]))}
    assert list(a["manifold"]) != list(b["manifold"])
    for v in ("paper", "improved"):
        assert repr(manifold_settings(a["manifold"], v)) == repr(manifold_settings(b["manifold"], v))
    assert repr(stable({"b": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": 0})) == "{'a': 0, 'b': {'x': [{'p': 2, 'q': 1}], 'y': 1}}"
