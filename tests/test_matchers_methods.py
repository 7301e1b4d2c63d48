"""sopcorr.matchers.methods: the named methods over frames, shared matchers between a method
and its prior variant, the pseudo_gt row = the flow store's matcher; the tables' gather."""
import re

import numpy as np
import pytest

from evaluate_toys import exact_method, toy_context
from sopcorr.errors import SopcorrError
from sopcorr.evaluate.pairs import run_pair_evaluation
from sopcorr.evaluate.tables import build_table, write_records
from sopcorr.flow.pseudo import pseudo_flows
from sopcorr.geometry import FeatureGrid, Letterbox
from sopcorr.matchers.base import Frame
from sopcorr.matchers.methods import METHODS, MatcherSettings, build_method, build_methods, method_inputs
from sopcorr.workflow_support import VOC_CATEGORIES


class PositionFrames:
    """Frames whose features = one-hot cell index (nearest neighbours between two frames of the
    same size map every cell to itself) and whose embedding is a random map shifted by the
    frame index (one column per index)."""

    def __init__(self, n, size=64, stride=8):
        self.grid = FeatureGrid(Letterbox(size, size, size), stride)
        h, w = self.grid.shape
        self.n = n
        self.feat = np.eye(h * w, dtype=np.float32).reshape(h, w, h * w)
        big = np.random.default_rng(0).normal(size=(h, w + n, 8)).astype(np.float32)
        self.emb = [big[:, k:k + w] for k in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        h, w = self.grid.shape
        return Frame(self.feat, np.ones((h, w), bool), self.grid, embedding=self.emb[i], index=i)


SETTINGS = MatcherSettings.from_params({
    "nn": {"device": "cpu"}, "siftflow": {"siftflow_levels": 1, "siftflow_iterations": 2},
    "geometric": {"seed": 0},
    "pseudo_gt": {"variant": "paper", "method": "nn", "mutual": True, "min_similarity": 0.5,
                  "refine": "none", "device": "cpu"}})


def test_nn_raw_on_identical_grids_is_identity():
    fr = PositionFrames(3)
    m = build_method("nn_raw", SETTINGS, {"raw": fr})
    corr = m.correspondence(0, 1)
    np.testing.assert_allclose(corr.target_xy, fr.grid.cell_centers_image(), atol=1e-4)
    assert corr.valid.all()


def test_prior_variant_shares_its_matcher_and_missing_inputs_fail():
    fr = PositionFrames(3)
    a, b = build_methods(["convflow", "convflow_prior"], SETTINGS, {"raw": fr})
    assert a.matcher is b.matcher and b.prior and not a.prior and a.base == b.base == "convflow"
    with pytest.raises(SopcorrError, match="no frames with 'embedding'"):
        build_method("nn_embed", SETTINGS, {"raw": fr})
    with pytest.raises(SopcorrError, match="no 'finetuned' checkpoint"):
        build_method("ours_finetuned", MatcherSettings.from_params({"siamese": {"device": "cpu"}}), {"raw": fr})
    with pytest.raises(SopcorrError, match="no 'siftflow' matcher settings"):
        build_method("siftflow", MatcherSettings(), {"raw": fr})
    with pytest.raises(SopcorrError, match="unknown method"):
        build_method("nope", SETTINGS, {"raw": fr})
    assert method_inputs(["nn_raw", "nn_embed_labels", "nn_embed_iter1", "ours_finetuned"]) == [
        "embedding", "embedding_iter1", "labels", "finetuned"]
    assert {n for n, s in METHODS.items() if s.prior} == {"siftflow_prior", "convflow_prior", "ours_network_prior",
                                                           "ours_finetuned_prior", "ours_geometric_prior"}


def test_pseudo_gt_row_is_the_flow_stores_matcher():
    """The pseudo_gt method gives exactly what pseudo_flows writes with the same settings."""
    from sopcorr.matchers.pseudo import build_pseudo_gt

    fr = PositionFrames(3)
    m = build_method("pseudo_gt", SETTINGS, {"embedding": fr})
    out = pseudo_flows(build_pseudo_gt(SETTINGS.pseudo_gt), fr, [(0, 2)])
    corr = m.correspondence(0, 2)
    np.testing.assert_array_equal(corr.valid, out["valid"][0])
    np.testing.assert_array_equal(corr.target_xy, out["target_xy"][0])
    # mutual + min_similarity: source columns 0-1 have no true match (the map shifts by 2)
    assert corr.valid[:, 2:].all() and corr.valid[:, :2].mean() < 0.5


def test_build_table_from_records_with_paper_rows(tmp_path):
    cats = VOC_CATEGORIES[:3]
    paths = []
    for c in cats:
        p = tmp_path / f"{c}.json"
        write_records(p, {"localisation": [dict(method="ours_finetuned", category=c, value=50.0),
                                           dict(method="siftflow", category=c, value=float("nan"))]})
        paths.append(p)
    notes = {"alpha": 0.1, "k_neighbors": 25}
    df = build_table("keypoint_pck", paths, cats, notes, True, tmp_path / "t.csv")
    assert df["method"].tolist()[:2] == ["siftflow", "ours_finetuned"]
    assert "paper: Ours" in df["method"].tolist()
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "method," + ",".join(cats) + ",mean"
    assert lines[1] == "siftflow,,,,"
    md = (tmp_path / "t.md").read_text()
    assert "Table 2" in md and "K = 25" in md
    # synthetic data: no paper rows
    df = build_table("keypoint_pck", paths, cats, notes, False, tmp_path / "u.csv")
    assert not any(m.startswith("paper") for m in df["method"])


def test_pair_table_per_pair_column_weighs_every_pair_once(tmp_path):
    """Category a: one pair at 100 %; category b: three pairs at 0 %. The mean of categories is
    50, the mean over pairs 25."""
    recs = {"a": [100.0], "b": [0.0, 0.0, 0.0]}
    paths = []
    for c, per in recs.items():
        p = tmp_path / f"{c}.json"
        write_records(p, {"pairs": [dict(method="m", alpha=0.1, category=c, value=float(np.mean(per)),
                                         correct=0, total=0, per_pair=per)]})
        paths.append(p)
    df = build_table("pair_pck", paths, ["a", "b"], {}, False, tmp_path / "p.csv")
    assert df["mean"].iloc[0] == 50.0 and df["per_pair"].iloc[0] == 25.0
    assert (tmp_path / "p.csv").read_text().splitlines() == ["method,alpha,a,b,mean,per_pair", "m,0.1,100.0,0.0,50.0,25.0"]
    assert "per_pair" in (tmp_path / "p.md").read_text()
    # a missing category: no per-pair mean either
    df = build_table("pair_pck", paths[:1], ["a", "b"], {}, False, tmp_path / "q.csv")
    assert np.isnan(df["per_pair"].iloc[0])


def test_pair_evaluation_records_each_pair():
    cat = toy_context()
    res = run_pair_evaluation(cat, [exact_method()], [0.1])
    assert len(res[0]["per_pair"]) == len(cat.pairs()) and set(res[0]["per_pair"]) == {100.0}


def test_every_method_is_described_by_its_spec():
    """The report's front page and `sopcorr match` read the descriptions from the methods'
    specs: every named method has its own one line, plain text (no Sphinx roles), and a prior
    variant says so."""
    from sopcorr.matchers.methods import METHODS, method_descriptions

    d = method_descriptions()
    assert set(d) == set(METHODS) and all(METHODS[m].description == d[m] for m in d)
    assert all(text and "\n" not in text for text in d.values())
    assert len(set(d.values())) == len(d), "two methods share a description"
    assert "location prior" in d["ours_geometric_prior"] and d["ours_geometric"] in d["ours_geometric_prior"]
    assert "_prior" not in d["geo_concat"]  # each description is its method's alone
    assert not [m for m, text in d.items() if re.search(r":[a-z]+:`", text)], "Sphinx roles left"


def test_every_method_kind_has_a_builder():
    from sopcorr.matchers.methods import BUILDERS, METHODS

    assert {s.kind for s in METHODS.values()} == set(BUILDERS)
