"""A finished tiny run with its HTML report built, as `make demo` leaves the default run: one
clone of the reference run per test process, shared by tests/test_report.py and
tests/test_doc_paths.py (read only)."""
from __future__ import annotations

from pathlib import Path

from integration.helpers import clone, reference_run, results, run_snakemake

_REPORTED: dict = {}


def reported_run(tmp_path_factory) -> Path:
    if "dir" not in _REPORTED:
        wd = clone(reference_run(tmp_path_factory), tmp_path_factory.mktemp("reported") / "run")
        run_snakemake(wd, cores=1, extra=["--report", f"results/{results(wd).name}/report.html"])
        _REPORTED["dir"] = wd
    return _REPORTED["dir"]
