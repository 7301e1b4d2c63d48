"""Profiles (issue 7, item 1): profiles/local and profiles/slurm are valid Snakemake profiles
that dry-run the workflow, cap GPU rules on a workstation, and ask SLURM for a GPU for the GPU
rules. The SLURM profile is exercised for real by tests/slurm/run.sh (make test-slurm)."""
from __future__ import annotations

import re

import pytest
import yaml

from integration.helpers import REPO, copy_workflow, dry_run_jobs, run_snakemake

GPU_RULES = ("train_siamese", "finetune_siamese")


def _profile(name):
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


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
