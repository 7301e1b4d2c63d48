"""Profiles (issue 7, item 1): profiles/local and profiles/slurm are valid Snakemake profiles
that dry-run the workflow, cap GPU rules on a workstation, and ask SLURM for a GPU for the GPU
rules. The SLURM profile is exercised for real by tests/slurm/run.sh (make test-slurm)."""
from __future__ import annotations

import re

import pytest
import yaml

from integration.helpers import REPO, copy_workflow, dry_run_jobs, run_snakemake

GPU_RULES = ("train_siamese", "finetune_siamese")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects a mapping with a repeated key (PyYAML keeps the last one)."""


def _construct_unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _load_unique(text):
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _profile(name):
    return _load_unique((REPO / "profiles" / name / "config.yaml").read_text())


PROFILES = sorted(p.parent.name for p in (REPO / "profiles").glob("*/config.yaml"))


def test_unique_key_loader_rejects_a_repeated_key():
    assert _load_unique("a: 1\nb: {c: 2}\n") == {"a": 1, "b": {"c": 2}}
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'a'"):
        _load_unique("a: 1\nb: 2\na: 3\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'c'"):
        _load_unique("b:\n  c: 1\n  c: 2\n")


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_has_one_value_per_key(name):
    # a repeated key is silently resolved to its last value by Snakemake's loader
    prof = _profile(name)
    assert isinstance(prof, dict) and prof
    assert {"local", "slurm"} <= set(PROFILES)


def test_no_default_profile():
    # a profiles/default would be applied on top of --profile slurm as well
    assert not (REPO / "profiles" / "default").exists()


def test_local_profile_caps_gpu_jobs_and_resumes_incomplete_jobs():
    prof = _profile("local")
    assert "gpu=1" in prof["resources"]
    assert prof["rerun-incomplete"] is True
    assert "executor" not in prof


def test_slurm_profile_resources():
    prof = _profile("slurm")
    assert prof["executor"] == "slurm"
    defaults = dict(item.split("=", 1) for item in prof["default-resources"])
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(defaults)
    # cpus_per_task in the defaults would override cpus_per_gpu of the GPU rules
    assert "cpus_per_task" not in defaults
    for rule in GPU_RULES:
        res = prof["set-resources"][rule]
        assert res["gpu"] == 1 and res["cpus_per_gpu"] >= 1
    assert prof["slurm-status-command"] in ("squeue", "sacct")


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profile_dry_runs_the_workflow(profile, tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    out = run_snakemake(wd, cores=1, extra=["-n", "--profile", f"profiles/{profile}"]).stdout
    rules = {rule for rule, _ in dry_run_jobs(out)}
    assert {"prepare_category", "extract_features"} <= rules, out[-2000:]
    listed = set(run_snakemake(wd, extra=["--list-rules"]).stdout.split())
    for rule in GPU_RULES:
        assert rule in listed, f"set-resources names rule {rule}, which the workflow lacks"
    if profile == "slurm":
        # the GPU rules carry gpu=1 and the profile's cpus_per_gpu into their job resources
        blocks = re.split(r"\n(?=(?:local)?rule \w+:)", out)
        for rule in GPU_RULES:
            block = next(b for b in blocks if b.startswith(f"rule {rule}:"))
            res = re.search(r"resources: (.*)", block).group(1)
            assert "gpu=1" in res and "cpus_per_gpu=" in res, res
