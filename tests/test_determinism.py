"""Determinism (issue 7, item 6): the same config twice, in two different directories, gives
byte-identical tables. Integration test: runs Snakemake on tests/integration/tiny.yaml."""
from __future__ import annotations

import pytest

from integration.helpers import (TABLES_ONLY, comparable_files, copy_workflow, records_mismatches,
                                 reference_run, run_snakemake)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]


@pytest.fixture
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


def test_two_runs_give_byte_identical_tables(reference, tmp_path):
    second = copy_workflow(tmp_path / "second")
    run_snakemake(second, cores=2, extra=TABLES_ONLY)
    a, b = comparable_files(reference), comparable_files(second)
    assert a, "the reference run produced nothing to compare"
    assert sorted(a) == sorted(b)
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"these differ between two runs of one config: {differing}"
    # the full-precision evaluation records agree too (floats to 1e-6 relative)
    assert records_mismatches(reference, second) == []
