"""Kill and resume (issue 7, item 4): SIGKILL the whole Snakemake process group while a
manifold job runs, resume, SIGKILL it again while the Siamese network trains (right after its
first resumable checkpoint, so the next run continues the training from there), resume with
``--rerun-incomplete``. The shared reference ``b`` is built exactly so
(tests/integration/references.py); this test checks what the kills saw, and
tests/test_determinism.py that its tables equal those of the uninterrupted run ``a``."""
from __future__ import annotations

import json

import pytest

from integration.references import MANIFOLD_RULE, TRAIN_RULE

pytestmark = pytest.mark.slow


def test_sigkill_during_manifold_and_training_then_resume(reference_b):
    seen = json.loads((reference_b / "kill_resume.json").read_text())
    assert seen["killed_in_manifold"], "the run ended before a manifold job started:\n" + seen["run1_tail"]
    assert MANIFOLD_RULE in seen["pending_after_kill1"]
    assert seen["killed_in_training"], "the resumed run ended before training started:\n" + seen["run2_tail"]
    assert seen["state_at_kill2"] and not seen["model_at_kill2"], \
        "training finished before its first checkpoint could be caught; raise siamese.correlation.steps"
    # nothing of the manifold stage is left to do: the first resume finished it
    pending = seen["pending_after_kill2"]
    assert TRAIN_RULE in pending and MANIFOLD_RULE not in pending, pending
    assert "resuming from" in seen["train_log"], "training restarted from scratch instead of its checkpoint"
