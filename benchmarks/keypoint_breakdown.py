"""Pair-wise PCK per keypoint name (issue 23, item 3: why the learned network gains little on
some synthetic categories' keypoints while its dense PCK gains a lot).

For a finished run, every dataset pair of each category (not only ``evaluate.max_eval_pairs``)
is matched by each of ``--methods`` (the pipeline's named methods, built from the run's stores
and its last network), and every keypoint visible in both images is scored at PCK@``--alpha``.
Printed per category: each keypoint name's PCK per method (with how many keypoints it pools),
the category's pooled PCK, and a binomial standard error, so a difference between methods can be
told from noise. Also the distance of each keypoint to its nearest cell centre over the cell
size, and its distance to the object box border, where the grid's resolution matters.

Usage (from the repository root):

    .venv/bin/python benchmarks/keypoint_breakdown.py [--run results/default] [--categories a,b]
        [--methods nn_raw,ours_geometric,ours_network] [--alpha 0.1] [--max-pairs N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sopcorr.config import load_config  # noqa: E402
from sopcorr.evaluate.category import EvalCategory  # noqa: E402
from sopcorr.evaluate.pck import correct_keypoints  # noqa: E402
from sopcorr.evaluate.transfer import transfer_points  # noqa: E402
from sopcorr.matchers.base import frame_sources  # noqa: E402
from sopcorr.matchers.learned import learned_checkpoints  # noqa: E402
from sopcorr.matchers.methods import MatcherSettings, build_methods, method_inputs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "results" / "default"))
    ap.add_argument("--config", nargs="*", default=None)
    ap.add_argument("--categories", default=None)
    ap.add_argument("--methods", default="nn_raw,ours_geometric,ours_network")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--max-pairs", type=int, default=None)
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / "features").is_dir():
        ap.error(f"needs a finished run: {run}/features not found (snakemake --cores all)")
    config = load_config(*(a.config or [str(REPO / "config" / "config.yaml")]))
    g = {k: v for k, v in config["flow"]["geometric"].items() if k != "fb_tolerance"}
    methods = a.methods.split(",")
    params = {"nn": {}, "geometric": {**g, "seed": config["seed"]}, "siamese": {}}
    settings = MatcherSettings.from_params(params, {"flow": "cpu", "siamese": "cpu"})
    cats = a.categories.split(",") if a.categories else sorted(p.name[:-5] for p in (run / "features").glob("*.zarr"))
    ck = {"model": str(learned_checkpoints(run)[0]),  # the last round's trained network
          "finetuned": str(run / "siamese" / "improved" / "finetuned.pt")}
    print(f"# {run}: network {ck['model']}; PCK@{a.alpha:g} per keypoint over every dataset pair")
    need = method_inputs(methods)
    for c in cats:
        fr = frame_sources(run / "data" / c / "instances.json", run / "features" / f"{c}.zarr",
                           embedding=run / "manifold" / "improved" / c / "embedded.zarr" if "embedding" in need else None,
                           category=c)
        cat = EvalCategory.from_frames(fr["raw"])
        ms = build_methods(methods, settings, fr, ck)
        pairs = cat.pairs(a.max_pairs, int(config["seed"]))
        names = cat.names
        hit = {m.name: np.zeros(len(names)) for m in ms}
        tot = np.zeros(len(names))
        cell_off, border = [[] for _ in names], [[] for _ in names]
        for s, t in pairs:
            ks, kt = cat.keypoints(s), cat.keypoints(t)
            both = (ks[:, 2] > 0) & (kt[:, 2] > 0)
            if not both.any():
                continue
            idx = np.flatnonzero(both)
            tot[idx] += 1
            grid = fr["raw"][t].grid
            cells = grid.image_to_cell(kt[idx, :2])
            x0, y0, x1, y1 = cat.bbox(t)
            side = max(x1 - x0, y1 - y0)
            for k, i in enumerate(idx):
                cell_off[i].append(float(np.hypot(*(cells[k] - np.rint(cells[k])))))
                border[i].append(float(min(kt[i, 0] - x0, x1 - kt[i, 0], kt[i, 1] - y0, y1 - kt[i, 1]) / side))
            for m in ms:
                xy, _, ok = transfer_points(m.correspondence(s, t), ks[idx, :2])
                xy = np.where(ok[:, None], xy, np.nan)
                hit[m.name][idx] += correct_keypoints(xy, kt[idx, :2], np.ones(len(idx), bool), cat.bbox(t), a.alpha)
        print(f"\n## {c}: {len(pairs)} pairs, {int(tot.sum())} keypoints")
        print(f"{'keypoint':16s} {'n':>5s} " + " ".join(f"{m.name[:14]:>14s}" for m in ms)
              + f" {'to border':>9s}")
        for i, n in enumerate(names):
            if tot[i] == 0:
                continue
            print(f"{n[:16]:16s} {int(tot[i]):5d} " + " ".join(f"{100 * hit[m.name][i] / tot[i]:14.1f}" for m in ms)
                  + f" {np.mean(border[i]):9.3f}")
        n = tot.sum()
        line = " ".join(f"{100 * hit[m.name].sum() / n:14.1f}" for m in ms)
        se = " ".join(f"{100 * np.sqrt((hit[m.name].sum() / n) * (1 - hit[m.name].sum() / n) / n):14.1f}" for m in ms)
        print(f"{'pooled':16s} {int(n):5d} {line}")
        print(f"{'std. error':16s} {'':5s} {se}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
