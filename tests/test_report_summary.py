"""The report's first screen (issue 14, Build 2): sopcorr.report_summary turns a run's tables into
the workflow description: the headline table at alpha with the best method marked, what each
method is, the other tables' leaders, links to the figures; valid reStructuredText after
Snakemake's Jinja pass."""
from __future__ import annotations

from types import SimpleNamespace

import jinja2
import pandas as pd
import pytest
from docutils.core import publish_parts

from sopcorr.errors import SopcorrError
from sopcorr.report_summary import (RunTable, SummaryParams, best_methods, headline_rows,
                                    method_descriptions, read_run_table,
                                    render_summary, rst_text, value_columns)

PARAMS = SummaryParams(run="tiny", dataset="synthetic", categories=("bird", "car"), variant="improved",
                       backbone="efficientnet_lite0 at 96 px", alpha=0.1)


def _pairs():
    return pd.DataFrame({
        "method": ["nn_raw", "nn_raw", "convflow", "convflow", "ours_geometric", "ours_geometric",
                   "paper: ours"],
        "alpha": [0.05, 0.1, 0.05, 0.1, 0.05, 0.1, 0.1],
        "bird": [1.0, 20.0, 2.0, 30.0, 3.0, 40.0, 99.0],
        "car": [1.0, 10.0, 2.0, 50.0, 3.0, 44.0, 99.0],
        "mean": [1.0, 15.0, 2.0, 40.0, 3.0, 42.0, 99.0],
    })


def _render_like_snakemake(rst: str, files=(), categories=("Figures", "Tables")) -> str:
    """Jinja with Snakemake's context, its link targets appended, then docutils with every
    warning an error (an unknown link target, broken markup)."""
    cats = [SimpleNamespace(name=c) for c in categories]
    links = "\n".join([""] + [f".. _{c}: javascript:show('{c}')" for c in categories]
                      + [f".. _{f}: javascript:show('{f}')" for f in files])
    text = jinja2.Environment().from_string(rst + links).render(categories=cats, files=[])
    return publish_parts(text, writer="html",
                         settings_overrides={"halt_level": 2, "report_level": 2})["html_body"]


def test_headline_rows_keep_the_alpha_and_best_ignores_paper_rows():
    t = RunTable("pair_pck", _pairs())
    rows = headline_rows(t, 0.1)
    assert list(rows["method"]) == ["nn_raw", "convflow", "ours_geometric", "paper: ours"]
    assert "alpha" not in rows.columns
    assert value_columns(rows, ["car", "bird"]) == ["car", "bird", "mean"]
    assert best_methods(rows, "mean") == ["ours_geometric"]  # not the quoted paper row
    assert best_methods(rows, "car") == ["convflow"]
    assert best_methods(headline_rows(t, 0.05), "mean") == ["ours_geometric"]


def test_ties_are_all_best_and_missing_values_are_skipped():
    df = pd.DataFrame({"method": ["a", "b", "c"], "mean": [5.0, 5.0, float("nan")]})
    assert best_methods(df, "mean") == ["a", "b"]
    assert best_methods(df, "nope") == []
    assert best_methods(pd.DataFrame({"method": ["a"], "mean": [float("nan")]}), "mean") == []


def test_metric_keyed_tables_keep_the_pck_row():
    df = pd.DataFrame({"method": ["x", "x", "y", "y"], "metric": ["epe_px", "pck@0.1"] * 2,
                       "bird": [20.0, 5.0, 3.0, 9.0], "mean": [20.0, 5.0, 3.0, 9.0]})
    rows = headline_rows(RunTable("dense_synthetic", df), 0.1)
    assert list(rows["mean"]) == [5.0, 9.0]
    assert best_methods(rows) == ["y"]


def test_every_headline_method_of_the_registry_is_described():
    d = method_descriptions()
    for m in ("nn_raw", "nn_embed", "convflow", "siftflow", "ours_geometric", "ours_network"):
        assert d.get(m), m


def test_read_run_table_takes_title_and_notes_from_the_markdown(tmp_path):
    _pairs().to_csv(tmp_path / "pair_pck.csv", index=False)
    (tmp_path / "pair_pck.md").write_text("**Pair-wise PCK (%)**\n\n| method | alpha |\n|:--|:--|\n"
                                          "| nn_raw | 0.1 |\n\nKeypoints visible in both images.\n")
    t = read_run_table(tmp_path / "pair_pck.csv")
    assert t.name == "pair_pck" and t.title == "Pair-wise PCK (%)"
    assert t.notes == ("Keypoints visible in both images.",)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SopcorrError, match="bad.csv: no 'method' column"):
        read_run_table(tmp_path / "bad.csv")


def test_rst_text_renders_as_itself():
    raw = "pck@0.1 of *all* {cats} name_ `x` a|b \\"
    html = publish_parts(jinja2.Environment().from_string(rst_text(raw)).render(),
                         writer="html")["html_body"]
    assert "pck&#64;0.1 of *all* {cats} name_ `x` a|b \\" in html and "mailto" not in html


def test_the_page_marks_the_best_method_and_links_what_exists():
    pairs = RunTable("pair_pck", _pairs(), "Pair-wise PCK (%) over the dataset's pairs",
                     ("Keypoints visible in both images, pck@0.1 of the box.",))
    kp = RunTable("keypoint_pck", pd.DataFrame({"method": ["nn_raw", "convflow_prior"], "bird": [1.0, 7.0],
                                                "car": [2.0, 8.0], "mean": [1.5, 7.5]}), "Keypoint PCK (%)")
    figs = ["results/tiny/figures/pck_bars_pairs.png", "results/tiny/figures/correspondence_bird.png"]
    rst = render_summary([kp, pairs], figs, PARAMS)
    html = _render_like_snakemake(rst, files=["keypoint_pck.html", "pck_bars_pairs.png",
                                              "correspondence_bird.png"])
    # the headline is the pair table (listed second) at alpha 0.1, with the best row marked
    assert html.index("Pair-wise PCK") < html.index("What each method is") < html.index("Other tables")
    assert "Best method: ours_geometric</strong> with 42.0" in html
    assert 'next best <tt class="docutils literal">convflow</tt> 40.0' in html
    assert "<strong>★&nbsp;ours_geometric</strong>" in html and "<strong>42.0</strong>" in html
    assert "★&nbsp;nn_raw" not in html and "15.0" in html and "1.0" not in html.split("Other tables")[0]
    assert "ours_geometric</tt> (this project's method)" in html
    assert "nn_raw</tt> (this project" not in html
    assert "numbers printed in the paper" in html
    assert "best <tt class=\"docutils literal\">convflow_prior</tt> (7.5)" in html
    assert "correspondence_bird.png" in html and "javascript:show('Tables')" in html
    assert "mailto" not in html


def test_a_run_without_tables_says_how_to_make_them():
    html = _render_like_snakemake(render_summary([], [], PARAMS))
    assert "no result tables yet" in html


def test_params_from_the_rule():
    p = SummaryParams.from_params({"run": "r", "dataset": "generic", "categories": ["a"], "variant": "paper",
                                   "backbone": "vgg16 at 448 px", "alpha": "0.05"})
    assert p.categories == ("a",) and p.alpha == 0.05
    with pytest.raises(SopcorrError, match="'alpha'"):
        SummaryParams.from_params({"run": "r", "dataset": "d", "categories": [], "variant": "v",
                                   "backbone": "b"})


def test_the_first_screen_links_the_viewer():
    pairs = RunTable("pair_pck", _pairs(), "Pair-wise PCK (%)")
    html = _render_like_snakemake(render_summary([pairs], [], PARAMS, viewer="viewer/index.html"))
    link = '<a href="viewer/index.html" target="_blank">viewer/index.html</a>'
    assert link in html and "<code>sopcorr view results/tiny</code>" in html
    # on the first screen: before the headline table
    assert html.index(link) < html.index("Best method")
    assert "Interactive viewer" not in _render_like_snakemake(render_summary([pairs], [], PARAMS))
