"""Rounds of self-training (issue 23, siamese.rounds) end to end on tests/integration/tiny.yaml,
from a copy of the finished default run with ``siamese.rounds: 2``: round 2's pseudo ground truth
is round 1's network on round 1's pairs, round 2's network is the one every consumer reads (the
fine-tuning, the evaluation, the viewer), round 1's files are kept (not rerun), and the inductive
and leave-one-category-out networks run the same rounds without reading a held-out image or
their category. Checked on the inputs Snakemake recorded for each job."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from integration.helpers import TINY, clone, results, run_snakemake
from test_generalisation_targets import image_ids, job_records

pytestmark = pytest.mark.slow

CATS = ["bird", "car"]


@pytest.fixture(scope="module")
def built(reference_a, tmp_path_factory):
    wd = clone(reference_a, tmp_path_factory.mktemp("rounds") / "run")
    overlay = wd / "rounds.yaml"
    overlay.write_text(yaml.safe_dump({"siamese": {"rounds": 2}}))
    run = f"results/{results(wd).name}"
    before = {p: (wd / run / p).stat().st_mtime_ns for p in ("siamese/improved/model.pt", "flow/improved/bird.zarr")}
    run_snakemake(wd, targets=["all", f"{run}/tables/inductive.csv", f"{run}/tables/transfer.csv"],
                  configfiles=[TINY, overlay], cores=2)
    return wd, run, before


def by_rule(records, rule, suffix=""):
    """{output: record} of the jobs of ``rule`` (outputs ending in ``suffix``: one per job)."""
    return {out: rec for out, rec in records.items() if rec["rule"] == rule and out.endswith(suffix)}


def test_round_two_learns_from_round_one_on_the_same_pairs(built):
    from sopcorr.flow.pseudo import FlowStore

    wd, run, before = built
    for p, t in before.items():  # round 1 is kept as it was
        assert (wd / run / p).stat().st_mtime_ns == t, p
    for c in CATS:
        first = FlowStore.open(wd / run / "flow" / "improved" / f"{c}.zarr")
        second = FlowStore.open(wd / run / "flow" / "improved" / "round2" / f"{c}.zarr")
        assert np.array_equal(first.pairs, second.pairs)
        assert second.attrs["round"] == 2 and second.attrs["network"] == f"{run}/siamese/improved/model.pt"
        assert second.attrs["round_teacher"]["method"] == "ours_network_geometric"
    records = job_records(wd)
    (rec,) = by_rule(records, "train_siamese_round", ".pt").values()
    assert sorted(rec["input"]) == sorted(
        [f"{run}/features/{c}.zarr" for c in CATS] + [f"{run}/flow/improved/round2/{c}.zarr" for c in CATS]
        + [f"{run}/data/{c}/instances.json" for c in CATS]
        + [f"{run}/siamese/improved/model.pt"])  # round_start: previous, round 1's weights
    # siamese.round_interpolation (0.5): round 2's network lies between round 1's and its training's
    from sopcorr.siamese.checkpoint import load_checkpoint

    ck = load_checkpoint(wd / run / "siamese" / "improved" / "round2" / "model.pt")
    assert ck["round_interpolation"] == {"start": f"{run}/siamese/improved/model.pt", "weight": 0.5}


def test_the_last_round_is_the_runs_network(built):
    wd, run, _ = built
    records = job_records(wd)
    last = f"{run}/siamese/improved/round2/model.pt"
    (ft,) = by_rule(records, "finetune_siamese", ".pt").values()
    assert last in ft["input"] and f"{run}/siamese/improved/model.pt" not in ft["input"]
    assert {f"{run}/flow/improved/round2/{c}.zarr" for c in CATS} <= set(ft["input"])
    for rule in ("evaluate", "viewer"):
        recs = by_rule(records, rule, ".json" if rule == "evaluate" else "")
        assert recs, rule
        for rec in recs.values():
            assert last in rec["input"] and f"{run}/siamese/improved/model.pt" not in rec["input"], rule


def test_the_protocols_run_the_same_rounds(built):
    wd, run, _ = built
    res = results(wd)
    records = job_records(wd)
    # inductive: round 2 is fitted on the fit half only, and the protocol evaluates it
    held = set()
    for c in CATS:
        held |= image_ids(res / "data" / c / "instances.json") - image_ids(
            res / "inductive" / "data" / c / "instances.json")
    for rule in ("pseudo_flow_round_inductive", "train_siamese_round_inductive"):
        recs = by_rule(records, rule)
        assert recs, rule
        for rec in recs.values():
            for p in rec["input"]:
                assert p.startswith(f"{run}/inductive/"), (rule, p)
                if not p.endswith(".pt"):
                    assert not image_ids(wd / p) & held, (rule, p)
    for rec in by_rule(records, "eval_inductive").values():
        assert f"{run}/inductive/siamese/improved/round2/model.pt" in rec["input"]
    # leave one category out: round 2 of the network that never saw c is taught by round 1 of
    # that network, on the other categories only
    for c in CATS:
        (rec,) = [r for o, r in by_rule(records, "train_siamese_round_transfer").items()
                  if o == f"{run}/siamese/improved/without_{c}/round2/model.pt"]
        others = [o for o in CATS if o != c]
        assert sorted(p for p in rec["input"] if "/flow/" in p) == [
            f"{run}/flow/improved/without_{c}/round2/{o}.zarr" for o in others]
        for p in rec["input"]:
            assert f"/{c}" not in p.replace(f"without_{c}", ""), p
        for o in others:
            (fl,) = [r for out, r in by_rule(records, "pseudo_flow_round_transfer").items()
                     if out == f"{run}/flow/improved/without_{c}/round2/{o}.zarr"]
            assert f"{run}/siamese/improved/without_{c}/model.pt" in fl["input"]
    for rec in by_rule(records, "eval_transfer").values():
        assert any(p.endswith("/round2/model.pt") and "/without_" in p for p in rec["input"])


def test_the_ablation_shows_every_round(built):
    """The ablation target reads every round's network (rows ours_network_round<r>) besides the
    last round's, for both variants (a dry run: the jobs and the stages they are given)."""
    from sopcorr.evaluate.ablation import variant_stages

    wd, run, _ = built
    out = run_snakemake(wd, targets=[f"{run}/tables/ablation.csv"], configfiles=[TINY, wd / "rounds.yaml"],
                        extra=["-n", "-p"]).stdout
    assert "rule ablation_category" in out
    for v in ("improved", "paper"):
        assert f"{run}/siamese/{v}/round2/model.pt" in out
        assert f"{run}/siamese/{v}/model.pt" in out
    assert variant_stages("improved", 2)[-2:] == ["ours_network_round1", "ours_network_round2"]
    assert not [s for s in variant_stages("improved", 1) if "round" in s]
