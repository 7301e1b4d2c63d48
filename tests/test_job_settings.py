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


# ---- the siamese stage: each architecture's keys in its own sub-section
SIAMESE = {"architecture": "paper", "keypoint_supervision": True, "keypoint_weight": 0.5, "grad_clip": 3.0,
           "freeze_encoder": False, "checkpoint_every": 7, "device": "cpu",
           "paper": {"steps": 5, "finetune_steps": 2, "lr": 0.01, "finetune_lr": 0.003, "scale_range": [1.0, 1.5]},
           "correlation": {"steps": 6, "finetune_steps": 3, "lr": 0.02, "finetune_lr": 0.004, "cells_per_pair": None}}


def _loop_settings(arch):
    from sopcorr.siamese.correlation.train import CorrelationSettings
    from sopcorr.siamese.paper.train import PaperSettings

    return {"paper": PaperSettings, "correlation": CorrelationSettings}[arch]


@pytest.mark.parametrize("arch", ["paper", "correlation"])
@pytest.mark.parametrize("finetune", [False, True])
def test_siamese_settings_build_the_same_settings_as_the_section(arch, finetune):
    from sopcorr.workflow_support import SIAMESE_RUNTIME_KEYS, siamese_settings

    section = validate_config({"siamese": {**SIAMESE, "architecture": arch}})["siamese"]
    job = siamese_settings(section, finetune)
    assert set(job) == {"architecture", "freeze_encoder", "grad_clip", arch} | (
        {"keypoint_supervision", "keypoint_weight"} if finetune else set())
    assert not any(k.startswith("finetune_") for k in job[arch]) or finetune
    # the scripts add the runtime keys the rules pass apart
    given = {**job, **{k: section[k] for k in SIAMESE_RUNTIME_KEYS}}
    cls = _loop_settings(arch)
    assert cls.from_section(given, 3, finetune) == cls.from_section(section, 3, finetune)
    cfg = cls.from_section(section, 3, finetune)
    assert (cfg.steps, cfg.lr) == ((2, 0.003) if finetune and arch == "paper" else (3, 0.004) if finetune
                                   else (5, 0.01) if arch == "paper" else (6, 0.02))
    assert cfg.keypoint_weight == (0.5 if finetune else 0.0) and cfg.grad_clip == 3.0 and not cfg.freeze_encoder
    # the other architecture's keys are not the job's
    other = "correlation" if arch == "paper" else "paper"
    changed = validate_config({"siamese": {**SIAMESE, "architecture": arch, other: {"steps": 99}}})["siamese"]
    assert siamese_settings(changed, finetune) == job
    assert siamese_settings(section, finetune, architecture=other)[other] != job.get(other)


@pytest.mark.parametrize("arch", ["paper", "correlation"])
def test_siamese_settings_defaults_are_the_schemas(arch):
    """Each architecture's settings class defaults to the schema's values of its sub-section."""
    defaults = validate_config({})["siamese"][arch]
    cls = _loop_settings(arch)
    own = [f for f in dataclasses.fields(cls) if f.name in defaults]
    assert len(own) >= 6
    for f in own:
        value = cls().__getattribute__(f.name)
        assert (list(value) if isinstance(value, tuple) else value) == defaults[f.name], f.name


def test_siamese_memory_follows_the_architecture():
    """mem_mb of the siamese jobs (a formula of the config): the paper network's encoder at its
    input size; the correlation network with a frozen encoder: the cached grids and the head, no
    backbone, so it does not grow with the backbone's weights; end to end: plus the backbone."""
    from sopcorr.features.memory import correlation_training_mb, job_memory_mb
    from sopcorr.workflow_support import siamese_memory_mb

    def mem(siamese=None, backbone=None, arch=None, images=40):
        cfg = validate_config({"siamese": siamese or {}, "backbone": backbone or {},
                               "dataset": {"synthetic": {"images_per_category": images}}})
        return siamese_memory_mb(cfg, cfg["dataset"]["synthetic"]["categories"], arch)

    paper = mem(arch="paper")
    assert paper == 2000 + job_memory_mb("efficientnet_lite0", 128, 8)
    assert mem({"paper": {"input_size": 704}}, arch="paper") > paper
    frozen = mem()
    assert frozen < paper
    # the grids of every image: more images (at a larger grid) need more
    assert mem(images=2000, backbone={"input_size": 448}) > mem(images=2000) > frozen
    # the same grid from a heavier backbone costs the same with a frozen encoder
    lite2 = mem(backbone={"name": "efficientnet_lite2"})
    assert lite2 == frozen
    assert mem({"freeze_encoder": False}) > frozen and mem({"freeze_encoder": False}) >= \
        job_memory_mb("efficientnet_lite0", 256, 16, training=True)
    assert correlation_training_mb(16, 304, 160, 960, 8, 256, 128, 128) == frozen


def test_every_per_architecture_table_covers_the_architectures():
    """ARCHITECTURES is the one list: the schema's enum and sub-sections, the training steps, the
    checkpoint loaders, the matcher classes and the runs' best learned matchers follow it."""
    from sopcorr.config import load_schema
    from sopcorr.matchers.learned import _BEST
    from sopcorr.matchers.networks import NETWORK_KINDS
    from sopcorr.siamese.checkpoint import NETS
    from sopcorr.siamese.settings import ARCHITECTURES, SHARED_KEYS
    from sopcorr.siamese.stage import STEPS

    arch = set(ARCHITECTURES)
    props = load_schema()["properties"]["siamese"]["properties"]
    assert set(props["architecture"]["enum"]) == arch
    assert set(props) == arch | set(SHARED_KEYS)
    assert set(STEPS) == set(NETS) == set(NETWORK_KINDS) == set(_BEST) == arch
    for a in ARCHITECTURES:
        step = STEPS[a]()
        assert step.architecture == a and step.settings_class.SECTION == a


@pytest.mark.slow
def test_siamese_memory_covers_the_measured_peak(reference_a):
    """The training jobs' request (correlation network, frozen encoder: grids and head, no
    backbone) covers the peak resident memory Snakemake measured in the shared tiny run, and is
    not more than 2.5 x that peak."""
    import csv

    from integration.helpers import REPO, TINY, results
    from sopcorr.config import load_config
    from sopcorr.workflow_support import resolve_categories, siamese_memory_mb

    cfg = load_config(REPO / "config" / "config.yaml", TINY)
    request = siamese_memory_mb(cfg, resolve_categories(cfg))
    for rule in ("train_siamese", "finetune_siamese"):
        with open(results(reference_a) / "benchmarks" / rule / f"{cfg['manifold']['variant']}.tsv") as fh:
            peak = float(next(csv.DictReader(fh, delimiter="\t"))["max_rss"])
        assert peak <= request <= 2.5 * peak, (rule, peak, request)
