"""Determinism (issue 7, item 6): the same config twice, in two different directories, gives
byte-identical tables. The two runs are the integration tests' shared references
(tests/integration/references.py): ``a`` uninterrupted, every job in a fresh process; ``b``
killed twice and resumed, its heavy jobs forked from the run's job server (sopcorr.jobserver)."""
from __future__ import annotations

import pytest

from integration.helpers import comparable_files, records_mismatches

pytestmark = pytest.mark.slow


def test_two_runs_give_byte_identical_tables(reference_a, reference_b):
    a, b = comparable_files(reference_a), comparable_files(reference_b)
    assert a, "the reference run produced nothing to compare"
    assert sorted(a) == sorted(b)
    differing = [name for name in a if a[name] != b[name]]
    assert not differing, f"these differ between two runs of one config: {differing}"
    # the full-precision evaluation records agree too (floats to 1e-6 relative)
    assert records_mismatches(reference_a, reference_b) == []
