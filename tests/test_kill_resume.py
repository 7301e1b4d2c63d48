"""Kill and resume (issue 7, item 4): SIGKILL the whole Snakemake process group while a
manifold job runs, resume, SIGKILL it again while the Siamese network trains (right after its
first resumable checkpoint, so the next run continues the training from there), resume with
``--rerun-incomplete``: the final tables equal those of an uninterrupted run.
Integration test on tests/integration/tiny.yaml."""
from __future__ import annotations

import pytest

from integration.helpers import (TABLES_ONLY, comparable_files, copy_workflow, dry_run_jobs,
                                 kill_when, log_matches, records_mismatches, reference_run,
                                 results, run_snakemake, start_snakemake, tail)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]

MANIFOLD_RULE = "manifold"
TRAIN_RULE = "train_siamese"


def _unlock(workdir):
    # a killed Snakemake leaves its lock behind; this is what a user runs first
    run_snakemake(workdir, extra=["--unlock"])


def test_sigkill_during_manifold_and_training_then_resume(tmp_path_factory, tmp_path):
    reference = reference_run(tmp_path_factory)
    wd = copy_workflow(tmp_path / "killed")

    log1 = tmp_path / "run1.log"
    proc = start_snakemake(wd, log1, cores=2, extra=TABLES_ONLY)
    assert kill_when(proc, log_matches(log1, rf"^(local)?rule {MANIFOLD_RULE}:"), delay=1.0), \
        "the run ended before a manifold job started:\n" + tail(log1.read_text())
    _unlock(wd)
    pending = dry_run_jobs(run_snakemake(wd, extra=["-n", "--rerun-incomplete"]).stdout)
    assert MANIFOLD_RULE in {rule for rule, _ in pending}

    log2 = tmp_path / "run2.log"
    proc = start_snakemake(wd, log2, cores=2, extra=[*TABLES_ONLY, "--rerun-incomplete"])
    siamese = results(wd) / "siamese"  # siamese[/<variant>]/model.pt
    # sopcorr.siamese.train keeps its resumable state in <output>.state.pt
    # (not the copy inside an atomic write's hidden temporary folder: that one is still
    # being written, and killing then restarts the training from scratch)
    def found(name):
        return [p for p in siamese.rglob(name) if not p.parent.name.endswith(".tmp")]

    states = lambda: found("model.pt.state.pt")  # noqa: E731
    finished = lambda: found("model.pt")  # noqa: E731
    assert kill_when(proc, lambda: bool(states() or finished())), \
        "the resumed run ended before training started:\n" + tail(log2.read_text())
    assert states() and not finished(), \
        "training finished before its first checkpoint could be caught; raise siamese.steps"
    _unlock(wd)
    # nothing of the manifold stage is left to do: the first resume finished it
    pending = dry_run_jobs(run_snakemake(wd, extra=["-n", "--rerun-incomplete"]).stdout)
    rules = {rule for rule, _ in pending}
    assert TRAIN_RULE in rules and MANIFOLD_RULE not in rules, pending

    run_snakemake(wd, cores=2, extra=[*TABLES_ONLY, "--rerun-incomplete"])
    train_log = "".join(p.read_text() for p in (results(wd) / "logs").rglob("*.log")
                        if TRAIN_RULE in str(p.relative_to(results(wd))))
    assert "resuming from" in train_log, "training restarted from scratch instead of its checkpoint"
    a, b = comparable_files(reference), comparable_files(wd)
    assert a and sorted(a) == sorted(b)
    assert [n for n in a if a[n] != b[n]] == []
    assert records_mismatches(reference, wd) == []
