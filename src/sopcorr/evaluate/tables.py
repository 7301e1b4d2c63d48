"""Result tables: CSV, Markdown and LaTeX laid out like the paper's Tables 1 and 2.

A table has a first column ``method``, optional key columns (``alpha`` for pair-wise PCK,
``metric`` for the dense table), one column per category, then ``mean`` (the mean over the
categories, empty when a category is missing). Values are printed with a fixed number of
decimals so two runs of the same configuration give byte-identical files.

The paper's own numbers (``paper_numbers.csv``, long format: table, paper_row, method, category,
value, source) are appended as rows named ``paper: <row>`` when every category of the table is
one of the paper's (the PASCAL VOC categories).
"""
from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_text


def wide_table(records: pd.DataFrame, categories: list[str], methods: list[str] | None = None,
               keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """Long records (columns method, *keys, category, value) -> the wide table
    (method, *keys, *categories, mean). Method order: ``methods`` (those present) else first
    appearance; key order: first appearance."""
    cols = ["method", *keys]
    if records is None or len(records) == 0:
        return pd.DataFrame(columns=[*cols, *categories, "mean"])
    rec = records.copy()
    present = list(dict.fromkeys(rec["method"]))
    order = [m for m in (methods or []) if m in present] + [m for m in present if m not in (methods or [])]
    rows = []
    for m in order:
        sub = rec[rec["method"] == m]
        key_vals = list(dict.fromkeys(map(tuple, sub[list(keys)].itertuples(index=False)))) if keys else [()]
        for kv in key_vals:
            s = sub
            for k, v in zip(keys, kv):
                s = s[s[k] == v]
            vals = {c: float(s.loc[s["category"] == c, "value"].iloc[0]) if (s["category"] == c).any()
                    else float("nan") for c in categories}
            arr = np.array([vals[c] for c in categories], dtype=float)
            mean = float(arr.mean()) if len(arr) and np.isfinite(arr).all() else float("nan")
            rows.append({"method": m, **dict(zip(keys, kv)), **vals, "mean": mean})
    return pd.DataFrame(rows, columns=[*cols, *categories, "mean"])


def _fmt(v, decimals: int) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.{decimals}f}"


def _key_fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def to_csv(df: pd.DataFrame, decimals: int = 1, keys: tuple[str, ...] = ()) -> str:
    """Deterministic CSV text (fixed decimals, empty cells for missing values)."""
    lines = [",".join(df.columns)]
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            if c == "method" or c in keys:
                s = _key_fmt(v)
                cells.append(f'"{s}"' if ("," in s or '"' in s) else s)
            else:
                cells.append(_fmt(v, decimals))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def to_markdown(df: pd.DataFrame, decimals: int = 1, title: str = "", notes: list[str] = (),
                keys: tuple[str, ...] = ()) -> str:
    """A Markdown table (methods as rows, categories as columns, then mean); missing: '-'."""
    out = []
    if title:
        out += [f"**{title}**", ""]
    out.append("| " + " | ".join(df.columns) + " |")
    out.append("|" + "|".join([":--"] * (1 + len(keys)) + ["--:"] * (len(df.columns) - 1 - len(keys))) + "|")
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            if c == "method" or c in keys:
                cells.append(_key_fmt(row[c]))
            else:
                cells.append(_fmt(row[c], decimals) or "-")
        out.append("| " + " | ".join(cells) + " |")
    if notes:
        out += [""] + [f"{n}" for n in notes]
    return "\n".join(out) + "\n"


def to_html(df: pd.DataFrame, decimals: int = 1, title: str = "", notes: list[str] = (),
            keys: tuple[str, ...] = ()) -> str:
    """A standalone HTML page of the table (for the Snakemake report, which shows HTML inline);
    our rows in bold, the paper's rows in grey."""
    import html

    css = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
           "td,th{padding:2px 8px;border-bottom:1px solid #ddd}td.n{text-align:right}"
           "tr.ours td{font-weight:bold}tr.paper td{color:#777}")
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{css}</style></head><body>"]
    if title:
        out.append(f"<h3>{html.escape(title)}</h3>")
    out.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns) + "</tr>")
    for _, row in df.iterrows():
        m = str(row["method"])
        cls = "ours" if m.startswith("ours") else "paper" if m.startswith("paper:") else ""
        cells = []
        for c in df.columns:
            if c == "method" or c in keys:
                cells.append(f"<td>{html.escape(_key_fmt(row[c]))}</td>")
            else:
                cells.append(f"<td class='n'>{_fmt(row[c], decimals) or '-'}</td>")
        out.append(f"<tr class='{cls}'>" + "".join(cells) + "</tr>")
    out.append("</table>")
    out += [f"<p>{html.escape(n)}</p>" for n in notes]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("@", r"@")):
        s = s.replace(a, b)
    return s


def to_latex(df: pd.DataFrame, decimals: int = 1, caption: str = "", label: str = "",
             keys: tuple[str, ...] = ()) -> str:
    """A LaTeX table (booktabs) like the paper's: methods as rows, categories and mean as
    columns; rows named ``paper: ...`` are set apart by a rule."""
    ncol = len(df.columns)
    spec = "l" * (1 + len(keys)) + "r" * (ncol - 1 - len(keys))
    lines = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule", " & ".join(_tex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    prev_paper = None
    for _, row in df.iterrows():
        is_paper = str(row["method"]).startswith("paper:")
        if prev_paper is not None and is_paper != prev_paper:
            lines.append(r"\midrule")
        prev_paper = is_paper
        cells = []
        for c in df.columns:
            if c == "method" or c in keys:
                cells.append(_tex_escape(_key_fmt(row[c])))
            else:
                cells.append(_fmt(row[c], decimals) or "--")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


def paper_numbers() -> pd.DataFrame:
    """The paper's Tables 1 and 2 as long records (table, paper_row, method, category, value,
    source)."""
    with resources.files("sopcorr.evaluate").joinpath("paper_numbers.csv").open() as fh:
        return pd.read_csv(fh, dtype={"category": str})


def paper_rows(table: str, categories: list[str]) -> tuple[pd.DataFrame, str | None]:
    """Rows ``paper: <row>`` of the paper's ``table`` ('keypoint_classification' or
    'keypoint_pck') over ``categories`` (mean recomputed over them when they are a subset),
    and the source line; empty when a category is not one of the paper's."""
    pn = paper_numbers()
    pn = pn[pn["table"] == table]
    known = set(pn["category"]) - {"mean"}
    if pn.empty or not categories or not set(categories) <= known:
        return pd.DataFrame(), None
    rec = pn[pn["category"] != "mean"].assign(method=lambda d: "paper: " + d["paper_row"])
    wide = wide_table(rec[["method", "category", "value"]], categories)
    if set(categories) == known:  # the paper's printed means (its own rounding)
        printed = pn[pn["category"] == "mean"].set_index("paper_row")["value"]
        wide["mean"] = [float(printed[m[len("paper: "):]]) for m in wide["method"]]
    return wide, str(pn["source"].iloc[0])


def write_table(df: pd.DataFrame, csv_path: str | Path, decimals: int = 1, title: str = "",
                notes: list[str] = (), keys: tuple[str, ...] = (), label: str = "",
                md_path: str | Path | None = None, tex_path: str | Path | None = None,
                html_path: str | Path | None = None) -> None:
    """Write ``df`` as CSV, Markdown and LaTeX (default: the CSV path with .md/.tex), and as
    HTML when ``html_path`` is given."""
    csv_path = Path(csv_path)
    write_text(csv_path, to_csv(df, decimals, keys))
    write_text(md_path or csv_path.with_suffix(".md"), to_markdown(df, decimals, title, notes, keys))
    write_text(tex_path or csv_path.with_suffix(".tex"),
               to_latex(df, decimals, " ".join([title, *notes]).strip(), label, keys))
    if html_path:
        write_text(html_path, to_html(df, decimals, title, notes, keys))


# ---------------------------------------------------------------------- per-category records
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_records(path: str | Path, records: dict) -> None:
    """Write a per-category result file (JSON; non-finite numbers become null)."""
    from ..io import write_json

    write_json(path, _jsonable(records), indent=None)


def read_records(paths, section: str) -> pd.DataFrame:
    """Concatenate the ``section`` lists of per-category result files."""
    import json

    rows = []
    for p in paths:
        with open(p) as fh:
            rows += json.load(fh).get(section, [])
    df = pd.DataFrame(rows)
    if "value" in df:
        df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


#: how each table is built: records section, key columns, decimals, title
TABLES = {
    "keypoint_classification": ("classification", (), 1,
                                "Keypoint classification accuracy (%) (paper Table 1)"),
    "keypoint_pck": ("localisation", (), 1, "Keypoint localisation PCK (%) (paper Table 2)"),
    "keypoint_pck_no_absence": ("localisation_no_absence", (), 1,
                                "Keypoint localisation PCK (%) without absence prediction (every name predicted present)"),
    "pair_pck": ("pairs", ("alpha",), 1, "Pair-wise PCK (%) over the dataset's pairs"),
    "dense_synthetic": ("dense", ("metric",), 1,
                        "Dense correspondence on the synthetic ground truth (end-point error in px; PCK and coverage in %)"),
    # the generalisation protocols (sopcorr.evaluate.generalisation): pair-wise PCK records
    "inductive": ("pairs", ("alpha",), 1,
                  "Inductive pair-wise PCK (%): manifold, teacher and network fitted on half of each "
                  "category's images, evaluated on pairs among the other half"),
    "transfer": ("pairs", ("alpha",), 1,
                 "Leave-one-category-out pair-wise PCK (%): each category's pairs matched by a network "
                 "trained on the other categories"),
    "transfer_from": ("pairs", ("alpha",), 1,
                      "Cross-run pair-wise PCK (%): another run's network on this run's pairs"),
}


def table_kind(table: str) -> str:
    """The key of :data:`TABLES` that builds ``table`` (``transfer_from_<source>`` ->
    ``transfer_from``)."""
    return "transfer_from" if table.startswith("transfer_from_") else table


def method_order(methods) -> list[str]:
    """Baselines first (in the given order), our rows (names starting with 'ours') last."""
    methods = list(dict.fromkeys(methods))
    return [m for m in methods if not m.startswith("ours")] + [m for m in methods if m.startswith("ours")]


def table_notes(table: str, notes: dict) -> list[str]:
    """The notes under ``table``; ``notes`` holds the config values they quote (the eval_table
    rule's ``notes`` params: crop_size, conv_layers, backbone, k_neighbors, alpha,
    dense_stride, as the table needs)."""
    ev = notes
    out = []
    if table == "keypoint_classification":
        out.append("Rows '<descriptor>_svm': one-vs-all linear SVM per category on descriptors at the "
                   f"ground-truth keypoints of the box warped to {ev.get('crop_size')} px "
                   f"(conv4/conv5: layers {ev.get('conv_layers') or 'default'} of {ev.get('backbone')}); "
                   f"rows '<method>_transfer': name vote of the K = {ev.get('k_neighbors')} retrieved "
                   "training objects' keypoints mapped through the method's dense correspondence.")
    elif table == "keypoint_pck":
        out.append(f"PCK at alpha = {ev.get('alpha')} of max(box h, w) over visible keypoints; "
                   f"K = {ev.get('k_neighbors')} retrieved training objects; absence threshold chosen on the "
                   "train split; '_prior' rows multiply scores by a Gaussian location prior.")
    elif table == "keypoint_pck_no_absence":
        out.append("As keypoint_pck but no name is ever predicted absent (threshold -inf): isolates the "
                   "localisation quality from the absence decision.")
    elif table == "pair_pck":
        out.append("Keypoints visible in both images mapped source -> target; alpha of max(target box h, w); "
                   "each category pools its pairs' keypoints, 'mean' is the mean of the categories; "
                   "'per_pair' is the mean over all pairs of all categories of each pair's PCK over its "
                   "keypoints visible in both (the PF-WILLOW / PF-PASCAL / SPair papers' number).")
    elif table == "inductive":
        out.append("Per category the images are split in half by a seeded hash of the instance id "
                   f"(seed {ev.get('seed')}); the manifold embedding, the teacher's pseudo ground truth and the "
                   "network are fitted on one half only, the other half is embedded with the fitted models as "
                   "new images; every row is evaluated on the dataset's pairs among the held-out half "
                   "(no labels are used). ours_geometric is the teacher with the inductive manifold. "
                   "Columns as in pair_pck.")
    elif table == "transfer":
        out.append("Rows ours_network and ours_network_geometric: for each category (column), a network "
                   "trained on the pseudo ground truth of every other category, never on this category; "
                   "nn_raw and the teacher ours_geometric (transductive: its manifold is fitted on the "
                   "category's own images, no labels) on the same pairs. Columns as in pair_pck.")
    elif table == "transfer_from":
        out.append(f"Rows ours_network and ours_network_geometric: the network of run '{ev.get('source')}' "
                   f"(never trained on this run's images) at this run's input size ({ev.get('input_size')} px); "
                   "nn_raw and this run's teacher ours_geometric on the same pairs (pair_pck has this run's "
                   "own network on them). Columns as in pair_pck.")
    elif table == "dense_synthetic":
        out.append(f"Object pixels visible in both images, sampled every {ev.get('dense_stride')} px; "
                   "PCK at alpha of max(target box h, w); undefined matches count as wrong in PCK, "
                   "are left out of the end-point error, and coverage is the fraction defined.")
    return out


def per_pair_column(records: pd.DataFrame, table: pd.DataFrame, categories: list[str],
                    keys: tuple[str, ...]) -> pd.Series:
    """The ``per_pair`` column of a wide table: per row (method, *keys), the mean of the
    records' ``per_pair`` lists over all categories (NaN when a category is missing)."""
    vals = []
    for _, row in table.iterrows():
        sub = records[records["method"] == row["method"]]
        for k in keys:
            sub = sub[sub[k] == row[k]]
        if set(categories) - set(sub["category"]):
            vals.append(float("nan"))
            continue
        per = [v for lst in sub["per_pair"] for v in (lst or []) if v is not None]
        vals.append(float(np.mean(per)) if per else float("nan"))
    return pd.Series(vals, index=table.index, dtype=float)


def build_table(table: str, inputs, categories: list[str], notes: dict, with_paper_rows: bool, csv_path,
                md_path=None, tex_path=None, html_path=None) -> pd.DataFrame:
    """Gather the per-category result files ``inputs`` into ``table`` (see :data:`TABLES`) and
    write CSV / Markdown / LaTeX (/ HTML). notes: the config values the notes quote
    (:func:`table_notes`); with_paper_rows: append the paper's numbers (the voc_berkeley dataset).
    Tables whose records carry ``per_pair`` lists (pair-wise PCK: ``pair_pck`` and the
    generalisation tables) get a ``per_pair`` column after ``mean``."""
    kind = table_kind(table)
    section, keys, decimals, title = TABLES[kind]
    rec = read_records(inputs, section)
    order = method_order(rec["method"]) if len(rec) else []
    df = wide_table(rec, list(categories), order, keys)
    if section == "pairs":
        df["per_pair"] = per_pair_column(rec, df, list(categories), keys) if len(rec) else pd.Series(dtype=float)
    notes = table_notes(kind, notes)
    if with_paper_rows and not keys:
        prow, src = paper_rows(table, list(categories))
        if len(prow):
            df = pd.concat([df, prow], ignore_index=True)
            notes.append(f"Rows 'paper: ...': {src}.")
    write_table(df, csv_path, decimals, title, notes, keys, label=f"tab:{table}",
                md_path=md_path, tex_path=tex_path, html_path=html_path)
    return df
