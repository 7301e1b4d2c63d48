import numpy as np
import pandas as pd

from sopcorr.evaluate.tables import paper_rows, to_csv, to_latex, to_markdown, wide_table, write_table


def records():
    return pd.DataFrame([
        dict(method="siftflow", category="bird", value=10.0),
        dict(method="siftflow", category="car", value=20.0),
        dict(method="ours_finetuned", category="car", value=40.0),
        dict(method="ours_finetuned", category="bird", value=30.04),
    ])


def test_wide_table_columns_mean_and_order():
    w = wide_table(records(), ["bird", "car"], methods=["ours_finetuned", "siftflow"])
    assert list(w.columns) == ["method", "bird", "car", "mean"]
    assert w["method"].tolist() == ["ours_finetuned", "siftflow"]
    np.testing.assert_allclose(w["mean"], [35.02, 15.0])
    # a missing category: empty mean
    w = wide_table(records(), ["bird", "car", "cat"])
    assert np.isnan(w["mean"]).all()
    assert to_csv(w).splitlines()[1] == "siftflow,10.0,20.0,,"


def test_formats_are_fixed_and_deterministic(tmp_path):
    w = wide_table(records(), ["bird", "car"])
    write_table(w, tmp_path / "t.csv", decimals=1, title="T")
    a = [(tmp_path / f"t.{e}").read_bytes() for e in ("csv", "md", "tex")]
    write_table(wide_table(records(), ["bird", "car"]), tmp_path / "t.csv", decimals=1, title="T")
    assert a == [(tmp_path / f"t.{e}").read_bytes() for e in ("csv", "md", "tex")]
    md = to_markdown(w)
    assert "| ours_finetuned | 30.0 | 40.0 | 35.0 |" in md
    tex = to_latex(w, caption="x")
    assert r"ours\_finetuned & 30.0 & 40.0 & 35.0 \\" in tex and r"\begin{tabular}{lrrr}" in tex


def test_key_column_tables():
    rec = pd.DataFrame([dict(method="nn_raw", alpha=a, category="bird", value=v)
                        for a, v in ((0.05, 1.0), (0.1, 2.0))])
    w = wide_table(rec, ["bird"], keys=("alpha",))
    assert list(w.columns) == ["method", "alpha", "bird", "mean"]
    assert to_csv(w, keys=("alpha",)).splitlines()[1:] == ["nn_raw,0.05,1.0,1.0", "nn_raw,0.1,2.0,2.0"]


def test_paper_rows_only_for_paper_categories():
    w, src = paper_rows("keypoint_pck", ["bird", "cat"])
    assert w["method"].tolist()[-1] == "paper: Ours" and "Table 2" in src
    np.testing.assert_allclose(w.loc[w["method"] == "paper: Ours", ["bird", "cat"]].values, [[51.1, 48.0]])
    w, src = paper_rows("keypoint_pck", ["bird", "quadruped"])
    assert w.empty and src is None


def test_html_table(tmp_path):
    w = wide_table(records(), ["bird", "car"])
    write_table(w, tmp_path / "t.csv", title="T", html_path=tmp_path / "t.html")
    h = (tmp_path / "t.html").read_text()
    assert "<tr class='ours'><td>ours_finetuned</td><td class='n'>30.0</td>" in h
