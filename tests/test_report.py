"""The HTML report of a finished run (issue 14, Build 2): it opens on a results page generated
from the run's tables (the best method marked), and the menu has one naming scheme: title-case
categories, every entry under a subcategory, entries labelled (never listed by file path)."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from integration.helpers import results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(reference_a):
    wd = reference_a
    return wd, (results(wd) / "report.html").read_text()


def _js_value(html: str, name: str):
    m = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert m, f"no '{name}' in the report"
    return json.loads(m.group(1))


def test_the_report_opens_on_the_runs_own_results(report):
    wd, html = report
    desc = json.loads(re.search(r"workflow_desc = (\".*?\");\n", html, re.S).group(1))
    pairs = pd.read_csv(results(wd) / "tables" / "pair_pck.csv")
    at01 = pairs[pairs["alpha"] == 0.1]
    best = at01.loc[at01["mean"].idxmax()]
    assert "sopcorr results: run" in desc
    assert f"Best method: {best['method']}</strong> with {best['mean']:.1f}" in desc
    assert f"<strong>★&nbsp;{best['method']}</strong>" in desc
    for m in at01["method"]:  # every method of the headline table, explained
        assert f"{m}</tt>" in desc
    assert "What each method is" in desc and "system-message" not in desc  # no RST errors
    for fig in ("pck_bars_pairs.png", "correspondence_bird.png"):
        assert fig in desc


def test_the_menu_has_one_naming_scheme(report):
    _, html = report
    cats = _js_value(html, "categories")
    assert set(cats) == {"Figures", "Manifold", "Siamese network", "Tables"}
    for cat, subcats in cats.items():
        assert cat[0].isupper(), cat
        assert "Other" not in subcats, f"{cat}: entries without a subcategory"
        for sub in subcats:
            assert sub[0].isupper(), (cat, sub)
    assert set(cats["Tables"]) == {"Correspondence", "Keypoints"}
    assert set(cats["Manifold"]) == {"Convergence"}


def test_every_entry_is_labelled_and_its_caption_says_what_to_look_for(report):
    _, html = report
    entries = _js_value(html, "results")
    assert entries
    for path, rec in entries.items():
        assert rec.get("labels"), f"{path} is listed by its file path"
        assert "What to look for" in rec.get("caption", ""), path
