"""The integration tests' two finished runs of tests/integration/tiny.yaml, built once per test
session and shared by every test process (pytest-xdist workers) through a file lock.

* ``a``: one uninterrupted run of the default target plus the HTML report, as ``make demo``
  leaves the default run, with ``job_server: false`` (every job in a fresh process). Every integration test that needs a finished run clones it
  (:func:`helpers.clone`) or reads it without writing.
* ``b``: the same config in another folder, its heavy jobs forked from the run's job server
  (:mod:`sopcorr.jobserver`, the default of local runs), killed twice and resumed (SIGKILL of the whole
  Snakemake process group while a manifold job runs, again right after the Siamese training's
  first resumable checkpoint, then ``--rerun-incomplete`` to the tables). What the kills saw is
  kept in ``b/kill_resume.json`` for tests/test_kill_resume.py; tests/test_determinism.py
  compares the tables and evaluation records of ``a`` and ``b``.

Building starts as soon as a test process starts, in a background thread (conftest.py: worker
``gw0`` builds ``a`` and ``gw1`` builds ``b``; without xdist, ``a`` then ``b``), so the two runs
overlap each other and the unit tests; a test that needs a run blocks until it is finished.
``SOPCORR_IT_REFERENCE=DIR`` reuses a finished ``a`` (development only).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

from filelock import FileLock

from integration.helpers import (TABLES_ONLY, TINY_RUN, copy_workflow, dry_run_jobs, kill_when,
                                 log_matches, results, run_snakemake, start_snakemake, tail)

#: the shared runs and what builds them
NAMES = ("a", "b")
#: what the kill-and-resume build of ``b`` kills in
MANIFOLD_RULE = "manifold"
TRAIN_RULE = "train_siamese"


def shared_root(tmp_path_factory) -> Path:
    """A folder every test process of this session sees: the xdist workers' common base temp
    (each worker's own base temp is ``<root>/popen-gw<i>``), else the session's base temp."""
    base = Path(tmp_path_factory.getbasetemp())
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    (root / "references").mkdir(exist_ok=True)
    return root / "references"


def _build_a(wd: Path) -> None:
    copy_workflow(wd)
    # every job in a fresh process (tests/test_startup.py reads what each job imported); ``b``
    # runs with the job server of local runs (config job_server: true, the default), so
    # tests/test_determinism.py compares the two ways a job runs
    run_snakemake(wd, cores=2, extra=["--config", "job_server=False"])
    run_snakemake(wd, cores=1, extra=["--report", f"results/{TINY_RUN}/report.html"])


def _unlock(wd: Path) -> None:
    # a killed Snakemake leaves its lock behind; this is what a user runs first
    run_snakemake(wd, extra=["--unlock"])


def _pending_rules(wd: Path) -> list[str]:
    return sorted({rule for rule, _ in dry_run_jobs(run_snakemake(wd, extra=["-n", "--rerun-incomplete"]).stdout)})


def _build_b(wd: Path) -> None:
    """The kill-and-resume run (module docstring); observations in ``wd/kill_resume.json``."""
    copy_workflow(wd)
    seen: dict = {}
    log1 = wd / "run1.log"
    proc = start_snakemake(wd, log1, cores=2, extra=TABLES_ONLY)
    seen["killed_in_manifold"] = kill_when(proc, log_matches(log1, rf"^(local)?rule {MANIFOLD_RULE}:"), delay=1.0)
    seen["run1_tail"] = tail(log1.read_text())
    _unlock(wd)
    seen["pending_after_kill1"] = _pending_rules(wd)

    log2 = wd / "run2.log"
    proc = start_snakemake(wd, log2, cores=2, extra=[*TABLES_ONLY, "--rerun-incomplete"])
    siamese = results(wd) / "siamese"

    def found(name):
        # sopcorr.siamese keeps its resumable state in <output>.state.pt (not the copy inside an
        # atomic write's hidden temporary folder: that one is still being written)
        return [p for p in siamese.rglob(name) if not p.parent.name.endswith(".tmp")]

    seen["killed_in_training"] = kill_when(proc, lambda: bool(found("model.pt.state.pt") or found("model.pt")))
    seen["state_at_kill2"] = bool(found("model.pt.state.pt"))
    seen["model_at_kill2"] = bool(found("model.pt"))
    seen["run2_tail"] = tail(log2.read_text())
    _unlock(wd)
    seen["pending_after_kill2"] = _pending_rules(wd)

    run_snakemake(wd, cores=2, extra=[*TABLES_ONLY, "--rerun-incomplete"])
    logs = results(wd) / "logs"
    seen["train_log"] = "".join(p.read_text() for p in logs.rglob("*.log")
                                if TRAIN_RULE in str(p.relative_to(logs)))
    (wd / "kill_resume.json").write_text(json.dumps(seen, indent=1))


BUILDERS = {"a": _build_a, "b": _build_b}


def _build_once(root: Path, name: str) -> None:
    """Build reference ``name`` under its lock unless done (or failed) already."""
    with FileLock(str(root / f"{name}.lock")):
        if (root / f"{name}.done").exists() or (root / f"{name}.error").exists():
            return
        wd = root / name
        if wd.exists():
            shutil.rmtree(wd)
        try:
            BUILDERS[name](wd)
        except BaseException as exc:  # noqa: BLE001 (every test that needs it reports it)
            (root / f"{name}.error").write_text(f"{type(exc).__name__}: {exc}")
            raise
        (root / f"{name}.done").write_text("")


def reused(name: str) -> Path | None:
    """A finished ``a`` given by ``SOPCORR_IT_REFERENCE`` (development), else None."""
    reuse = os.environ.get("SOPCORR_IT_REFERENCE")
    if name == "a" and reuse and (Path(reuse) / "results" / TINY_RUN).is_dir():
        return Path(reuse)
    return None


def reference(tmp_path_factory, name: str = "a") -> Path:
    """The finished reference run ``name`` (built now, or waited for while another test process
    builds it). Read only: tests that write clone it first."""
    if reused(name):
        return reused(name)
    root = shared_root(tmp_path_factory)
    try:
        _build_once(root, name)
    except BaseException:
        pass  # recorded in <name>.error, raised below
    err = root / f"{name}.error"
    if err.exists():
        raise AssertionError(f"the reference run '{name}' failed:\n{err.read_text()}")
    return root / name


_STARTED: dict[str, threading.Thread] = {}


def start_in_background(tmp_path_factory, names) -> None:
    """Start building each of ``names`` in a background thread of this process."""
    root = shared_root(tmp_path_factory)

    def build(name):
        try:
            _build_once(root, name)
        except BaseException:  # noqa: BLE001 (recorded in <name>.error)
            pass

    for n in names:
        if n not in _STARTED and not reused(n):
            _STARTED[n] = threading.Thread(target=build, args=(n,), name=f"reference-{n}", daemon=True)
            _STARTED[n].start()


def join_background() -> None:
    """Wait for this process's background builds (session end: other processes may wait on them)."""
    for thread in _STARTED.values():
        thread.join()
