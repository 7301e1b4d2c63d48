"""The HTML report's first screen: a workflow description generated from a run's own tables.

Snakemake shows the global ``report:`` file (reStructuredText, rendered through Jinja2 at
``--report`` time) beside the rule graph when the report opens. :func:`render_summary` writes that
file from the run's ``tables/*.csv`` (and the title and notes of the matching ``.md``): the
headline table at the configured alpha with the best method marked, what each of its methods is,
the other tables' leaders, and links to the figures and to every menu section. Nothing in it is
written by hand: rerunning the tables rewrites it.

The headline table is ``pair_pck`` (pair-wise PCK: every dataset with pairs) when the run has
it, else ``keypoint_pck`` (the paper's Table 2; VOC/Berkeley has no pairs).
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from .errors import SopcorrError
from .matchers.methods import method_descriptions

#: tables in the order the page lists them; the first one the run has is the headline
TABLE_ORDER = ("pair_pck", "keypoint_pck", "dense_synthetic", "keypoint_classification",
               "keypoint_pck_no_absence")
#: the generalisation protocols' tables (sopcorr.evaluate.generalisation): a section of their own,
#: in this order (``transfer_from_<source>`` tables after these)
PROTOCOL_ORDER = ("inductive", "transfer")
#: the row of a multi-row-per-method table that the page shows: key column -> value format
_KEY_COLUMNS = {"alpha": "{alpha:g}", "metric": "pck@{alpha:g}"}
#: columns that are neither keys nor values
_TEXT_COLUMNS = ("method", "variant", "stage")


@dataclass(frozen=True)
class SummaryParams:
    """What the page says about the run besides its tables (the rule's params)."""

    run: str
    dataset: str              # dataset.kind: synthetic | generic | voc_berkeley | ...
    categories: tuple[str, ...]
    variant: str              # manifold.variant whose outputs feed the "ours" rows
    backbone: str             # e.g. "efficientnet_lite0 at 256 px"
    alpha: float              # evaluate.alpha: the PCK threshold of the headline column

    @classmethod
    def from_params(cls, p: Mapping) -> "SummaryParams":
        try:
            return cls(run=str(p["run"]), dataset=str(p["dataset"]),
                       categories=tuple(str(c) for c in p["categories"]), variant=str(p["variant"]),
                       backbone=str(p["backbone"]), alpha=float(p["alpha"]))
        except KeyError as exc:
            raise SopcorrError(f"report summary: missing parameter {exc.args[0]!r}") from None


@dataclass(frozen=True)
class RunTable:
    """One result table of the run: ``frame`` as in tables/<name>.csv, ``title`` and ``notes``
    from tables/<name>.md (empty when that file is missing)."""

    name: str
    frame: pd.DataFrame
    title: str = ""
    notes: tuple[str, ...] = ()


def read_run_table(csv_path: str | Path) -> RunTable:
    """Read tables/<name>.csv and the title (``**...**``) and trailing notes of <name>.md."""
    csv_path = Path(csv_path)
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SopcorrError(f"{csv_path}: cannot read the table ({exc})") from None
    if "method" not in frame.columns:
        raise SopcorrError(f"{csv_path}: no 'method' column")
    title, notes = "", []
    md = csv_path.with_suffix(".md")
    if md.is_file():
        lines = md.read_text().splitlines()
        for line in lines:
            m = re.fullmatch(r"\*\*(.+)\*\*", line.strip())
            if m:
                title = m.group(1)
                break
        last_row = max((i for i, line in enumerate(lines) if line.startswith("|")), default=len(lines))
        notes = [line.strip() for line in lines[last_row + 1:] if line.strip()]
    return RunTable(csv_path.stem, frame, title, tuple(notes))


def headline_rows(table: RunTable, alpha: float) -> pd.DataFrame:
    """The rows of ``table`` at ``alpha`` (tables with an ``alpha`` or ``metric`` key column keep
    the rows of that alpha and drop the key), with the text columns first."""
    df = table.frame
    for key, fmt in _KEY_COLUMNS.items():
        if key in df.columns:
            want = fmt.format(alpha=alpha)
            keep = df[key].map(lambda v: _key_text(v) == want).astype(bool)
            df = df.loc[keep].drop(columns=[key])
    return df.reset_index(drop=True)


def _key_text(v) -> str:
    try:
        return f"{float(v):g}"
    except (TypeError, ValueError):
        return str(v)


def value_columns(df: pd.DataFrame, categories: Sequence[str]) -> list[str]:
    """Category columns in config order, then the other numeric columns (``mean`` first)."""
    cats = [c for c in categories if c in df.columns]
    rest = [c for c in df.columns if c not in cats and c not in _TEXT_COLUMNS
            and pd.api.types.is_numeric_dtype(df[c])]
    rest.sort(key=lambda c: (c != "mean", list(df.columns).index(c)))
    return cats + rest


def is_reference_row(method: str) -> bool:
    """Rows quoting numbers from the literature ('paper: ...'): shown, never 'best'."""
    return str(method).startswith("paper")


def best_methods(df: pd.DataFrame, column: str = "mean", lower_is_better: bool = False) -> list[str]:
    """The method(s) with the best ``column`` value among this run's rows (ties: all of them)."""
    if column not in df.columns:
        return []
    own = df[~df["method"].map(is_reference_row)]
    vals = pd.to_numeric(own[column], errors="coerce")
    if vals.notna().sum() == 0:
        return []
    best = vals.min() if lower_is_better else vals.max()
    return [str(m) for m, v in zip(own["method"], vals) if v == best]


def rst_text(text: str) -> str:
    """Plain text as reStructuredText that renders as itself (no emphasis, references or
    mailto links; braces survive Snakemake's Jinja pass)."""
    text = re.sub(r"([\\*`_|@])", r"\\\1", str(text))
    return re.sub(r"[{}]", lambda m: "{{ '" + m.group(0) + "' }}", text)


def _fmt(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "–" if math.isnan(f) else f"{f:.1f}"


def _cell(text: str, bold: bool) -> str:
    return f"**{text}**" if bold and text not in ("", "–") else text


def _list_table(df: pd.DataFrame, cols: list[str], best: Iterable[str], widths: str | None = None) -> list[str]:
    best = set(best)
    out = [".. list-table::", "   :header-rows: 1", ""]
    if widths:
        out.insert(2, f"   :widths: {widths}")
    out.append("   * - method")
    out += [f"     - {c}" for c in cols]
    for _, row in df.iterrows():
        name = str(row["method"])
        mark = name in best
        label = f"★\u00a0{name}" if mark else name  # no break between the mark and the name
        out.append(f"   * - {_cell(label, mark)}")
        out += [f"     - {_cell(_fmt(row[c]), mark)}" for c in cols]
    return out


def _table_title(t: RunTable) -> str:
    return rst_text(t.title or t.name.replace("_", " "))


def _menu_links() -> list[str]:
    """Links to every menu section, resolved by Snakemake's Jinja pass at --report time (only
    the sections this report has)."""
    return ["{% for cat in categories|sort(attribute='name') %}`{{ cat.name }}`_"
            "{% if not loop.last %} · {% endif %}{% endfor %}"]


#: Snakemake's report centres its content pane vertically (``items-center`` in a ``h-screen``
#: flex box): a page taller than the window then loses its top, where the results are. "safe"
#: centring falls back to the start when the content overflows.
_SCROLL_FROM_TOP = [
    ".. raw:: html", "",
    "   <style>div.h-screen.items-center { align-items: safe center; justify-content: safe center; }</style>",
    "",
]


def viewer_link(href: str, run: str) -> list[str]:
    """The page's line pointing at the run's interactive viewer: ``href`` relative to the
    report's folder (``results/<run>/``, where ``make demo`` writes report.html)."""
    href = html.escape(href, quote=True)
    run = html.escape(run)
    return [".. raw:: html", "",
            f'   <p><b>Interactive viewer:</b> <a href="{href}" target="_blank">{href}</a> beside this report '
            f"(results/{run}/{href}): point at any image of a category and every other image marks where "
            f"that point lands, for the methods below; or run <code>sopcorr view results/{run}</code>.</p>",
            ""]


def is_protocol_table(name: str) -> bool:
    """A generalisation protocol's table (inductive, transfer, transfer_from_<source>)."""
    return name in PROTOCOL_ORDER or name.startswith("transfer_from_")


def protocol_section(tables: Sequence[RunTable], params: SummaryParams) -> list[str]:
    """The page's section on the generalisation tables the run has: which figures are
    transductive, inductive or use labels, then each table at the headline alpha (the best
    row marked) with a link to it."""
    if not tables:
        return []
    order = {n: k for k, n in enumerate(PROTOCOL_ORDER)}
    tables = sorted(tables, key=lambda t: (order.get(t.name, len(order)), t.name))
    head = "Generalisation: images and categories the network never trained on"
    out = [head, "-" * len(head), "",
           "The tables above are transductive: the manifold, the teacher's pseudo ground truth and "
           "the network are fitted on every image of the run, the evaluated ones included (no labels; "
           "``ours_finetuned`` also uses the training split's pairs, and keypoint labels only with "
           "siamese.keypoint_supervision: true, which makes it supervised). The tables below hold the "
           "evaluated images out of what is fitted:", ""]
    for t in tables:
        r = headline_rows(t, params.alpha)
        c = value_columns(r, params.categories)
        col = "per_pair" if "per_pair" in c else ("mean" if "mean" in c else None)
        b = best_methods(r, col) if col else []
        out += [f"`{t.name}.html`_ — {_table_title(t)}, alpha = {params.alpha:g}", ""]
        out += _list_table(r, c, b) + [""]
        out += [rst_text(n) for n in t.notes] + [""] if t.notes else []
    return out


def render_summary(tables: Sequence[RunTable], figures: Sequence[str | Path], params: SummaryParams,
                   viewer: str | None = None) -> str:
    """The workflow description (reStructuredText with Snakemake's Jinja links). ``viewer``: the
    interactive viewer's index.html relative to the report's folder (linked on the first
    screen), or None. The generalisation tables among ``tables`` get a section of their own."""
    protocols = [t for t in tables if is_protocol_table(t.name)]
    tables = [t for t in tables if not is_protocol_table(t.name)]
    by_name = {t.name: t for t in tables}
    ordered = [by_name[n] for n in TABLE_ORDER if n in by_name] + \
              [t for t in tables if t.name not in TABLE_ORDER]
    cats = ", ".join(params.categories)
    head = f"sopcorr results: run ``{params.run}``"
    out = _SCROLL_FROM_TOP + [head, "=" * len(head), "",
           f"Dense semantic correspondence from a classification CNN (Gaur & Manjunath, ICCV 2017). "
           f"Dataset ``{params.dataset}`` ({len(params.categories)} categories: {cats}); backbone "
           f"{params.backbone}; manifold variant ``{params.variant}`` behind the ``ours_*`` rows. "
           f"Everything on this page is read from ``results/{params.run}/tables/``.", ""]
    if viewer:
        out += viewer_link(viewer, params.run)
    if not ordered:
        out += ["This run has no result tables yet: run ``snakemake --cores all`` first.", ""]
        return "\n".join(out) + "\n"

    top = ordered[0]
    rows = headline_rows(top, params.alpha)
    cols = value_columns(rows, params.categories)
    summary_col = "mean" if "mean" in cols else (cols[-1] if cols else None)
    best = best_methods(rows, summary_col) if summary_col else []
    title = _table_title(top)
    if top.name in ("pair_pck", "keypoint_pck"):
        title = f"{title}, alpha = {params.alpha:g}"
    out += [title, "-" * len(title), ""]
    if best and summary_col:
        vals = pd.to_numeric(rows.set_index("method")[summary_col], errors="coerce")
        others = vals[[m for m in vals.index if m not in best and not is_reference_row(m)]].dropna()
        line = (f"**Best method: {', '.join(best)}** with {_fmt(vals[best[0]])} "
                f"({summary_col} over the categories)")
        if len(others):
            runner = others.idxmax()
            line += f"; next best ``{runner}`` {_fmt(others.max())}"
        out += [line + ". Higher is better; the best row is marked ★.", ""]
    out += _list_table(rows, cols, best) + [""]
    out += [rst_text(n) for n in top.notes] + [""] if top.notes else []

    descriptions = method_descriptions()
    out += ["What each method is", "-------------------", ""]
    for m in rows["method"]:
        m = str(m)
        if is_reference_row(m):
            text = "numbers printed in the paper (Gaur & Manjunath, ICCV 2017), for comparison"
        else:
            text = descriptions.get(m, "see docs/EVALUATION.md")
        tag = " (this project's method)" if m.startswith("ours") else ""
        out.append(f"- ``{m}``{tag}: {text}")
    out.append("")

    if len(ordered) > 1:
        out += ["Other tables", "------------", ""]
        for t in ordered[1:]:
            r = headline_rows(t, params.alpha)
            c = value_columns(r, params.categories)
            col = "mean" if "mean" in c else None
            b = best_methods(r, col) if col else []
            lead = f": best {', '.join(f'``{x}``' for x in b)} ({_fmt(r.set_index('method').loc[b[0], col])})" if b else ""
            out.append(f"- `{t.name}.html`_ — {_table_title(t)}{lead}")
        out.append("")

    out += protocol_section(protocols, params)

    figs = [Path(f).name for f in figures]
    if figs:
        out += ["Figures", "-------", ""]
        out += [" · ".join(f"`{f}`_" for f in figs), ""]
    out += ["Every section of the menu: " + _menu_links()[0], ""]
    return "\n".join(out) + "\n"
