"""Partial reruns (issue 7, item 3): a change to one category's input reruns only that
category's jobs plus the global jobs downstream, and the documented recipes (one category's
target, ``-R`` with targets first, ``--until``) select what they say. Integration tests on
tests/integration/tiny.yaml; dry runs on a copy of the shared reference run."""
from __future__ import annotations

import json

import pytest

from integration.helpers import clone, copy_workflow, dry_run_jobs, results, run_snakemake

pytestmark = pytest.mark.slow

#: the stage rules these tests name (docs/ARCHITECTURE.md)
FEATURES_RULE = "extract_features"
MANIFOLD_RULE = "manifold"
TRAIN_RULE = "train_siamese"
#: a category's own jobs between its instances.json and the jobs that pool all categories
PER_CATEGORY_CHAIN = (FEATURES_RULE, MANIFOLD_RULE, "pseudo_flow")


@pytest.fixture
def done(reference_a, tmp_path):
    """A finished tiny run that the test may modify."""
    return clone(reference_a, tmp_path / "run")


def _dry(workdir, targets=(), extra=()):
    out = run_snakemake(workdir, targets=targets, extra=["-n", *extra]).stdout
    return [(rule, wc) for rule, wc in dry_run_jobs(out) if rule != "all"]


def test_finished_run_is_up_to_date(done):
    assert _dry(done) == []


def test_changed_category_input_reruns_that_category_only(done):
    # A user corrects one bird annotation. The bird chain reruns, then the jobs that pool all
    # categories (the Siamese network) and what depends on them (every category's evaluation
    # of the network, tables); none of car's own chain reruns.
    path = results(done) / "data" / "bird" / "instances.json"
    data = json.loads(path.read_text())
    inst = data["instances"][0]
    name, (x, y, v) = next(iter(inst["keypoints"].items()))
    inst["keypoints"][name] = [x + 0.5, y, v]
    path.write_text(json.dumps(data, indent=1))

    jobs = _dry(done)
    rules_for = lambda cat: {rule for rule, wc in jobs if wc.get("category") == cat}  # noqa: E731
    assert set(PER_CATEGORY_CHAIN) <= rules_for("bird"), jobs
    assert not set(PER_CATEGORY_CHAIN) & rules_for("car"), f"car's own chain would rerun: {jobs}"
    assert TRAIN_RULE in {rule for rule, _ in jobs}
    # nothing upstream of the changed file reruns
    assert not {"prepare_category", "generate_synthetic"} & {rule for rule, _ in jobs}


def test_one_category_target_reruns_only_that_category(done):
    # results/<run>/manifold[/<variant>]/bird/labels.zarr, wherever the layout puts it
    target = next(results(done).glob("manifold/**/bird/labels.zarr")).relative_to(done)
    jobs = _dry(done, targets=[target], extra=["-R", MANIFOLD_RULE])
    assert [(rule, wc.get("category")) for rule, wc in jobs] == [(MANIFOLD_RULE, "bird")], jobs


def test_forcerun_rule_with_all_targets_reruns_it_and_downstream(done):
    jobs = _dry(done, extra=["-R", MANIFOLD_RULE])
    rules = {rule for rule, _ in jobs}
    assert MANIFOLD_RULE in rules and FEATURES_RULE not in rules, jobs
    assert {wc.get("category") for rule, wc in jobs if rule == MANIFOLD_RULE} == {"bird", "car"}


def test_until_stops_after_the_named_rule(tmp_path):
    fresh = copy_workflow(tmp_path / "fresh")
    jobs = _dry(fresh, extra=["--until", FEATURES_RULE])
    rules = {rule for rule, _ in jobs}
    assert FEATURES_RULE in rules
    assert MANIFOLD_RULE not in rules and TRAIN_RULE not in rules, rules
