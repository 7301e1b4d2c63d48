import logging
from types import SimpleNamespace

import numpy as np
import pytest

from evaluate_toys import toy_context
from sopcorr.errors import SopcorrError
from sopcorr.evaluate.methods import CategoryContext, MethodUnavailable, available_methods, build_method
from sopcorr.evaluate.tables import build_table, write_records
from sopcorr.geometry import FeatureGrid, Letterbox
from sopcorr.workflow_support import VOC_CATEGORIES


class PositionStore:
    """Features = one-hot cell index: nearest neighbours between two images of the same size
    map every cell to itself."""

    def __init__(self, n, size=64, stride=8):
        self.grid_ = FeatureGrid(Letterbox(size, size, size), stride)
        h, w = self.grid_.shape
        self.valid = np.ones((n, h, w), bool)
        self.feat = np.eye(h * w, dtype=np.float32).reshape(h, w, h * w)
        self.global_desc = np.random.default_rng(0).normal(size=(n, 4))

    def load(self, i):
        return self.feat

    def grid(self, i):
        return self.grid_


def test_nn_raw_on_identical_grids_is_identity():
    ctx = toy_context()
    ctx.stores["raw"] = PositionStore(len(ctx.instances))
    m = build_method("nn_raw", ctx)
    corr = m.correspondence(0, 1)
    np.testing.assert_allclose(corr.target_xy, ctx.stores["raw"].grid_.cell_centers_image(), atol=1e-4)
    assert corr.valid.all()


def test_prior_variant_shares_base_and_missing_inputs_are_skipped(caplog):
    ctx = toy_context()
    ctx.stores["raw"] = PositionStore(len(ctx.instances))
    a, b = build_method("convflow", ctx), build_method("convflow_prior", ctx)
    assert a.fn is b.fn and b.prior and not a.prior
    with caplog.at_level(logging.WARNING):
        got = available_methods(["nn_raw", "nn_embed", "ours_finetuned"], ctx)
    assert [m.name for m in got] == ["nn_raw"]
    assert "nn_embed" in caplog.text and "ours_finetuned" in caplog.text
    with pytest.raises(SopcorrError):
        build_method("nope", ctx)
    with pytest.raises(MethodUnavailable):
        CategoryContext("x").store("embed")


def test_build_table_from_records_with_paper_rows(tmp_path):
    cats = VOC_CATEGORIES[:3]
    paths = []
    for c in cats:
        p = tmp_path / f"{c}.json"
        write_records(p, {"localisation": [dict(method="ours_finetuned", category=c, value=50.0),
                                           dict(method="siftflow", category=c, value=float("nan"))]})
        paths.append(p)
    cfg = {"dataset": {"kind": "voc_berkeley"}, "evaluate": {"alpha": 0.1, "k_neighbors": 25}}
    df = build_table("keypoint_pck", paths, cats, cfg, tmp_path / "t.csv")
    assert df["method"].tolist()[:2] == ["siftflow", "ours_finetuned"]
    assert "paper: Ours" in df["method"].tolist()
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "method," + ",".join(cats) + ",mean"
    assert lines[1] == "siftflow,,,,"
    assert "Table 2" in (tmp_path / "t.md").read_text()
    # synthetic data: no paper rows
    df = build_table("keypoint_pck", paths, cats, {"dataset": {"kind": "synthetic"}}, tmp_path / "u.csv")
    assert not any(m.startswith("paper") for m in df["method"])
