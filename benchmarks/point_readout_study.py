"""How the correlation network transfers a point between cell centres (issue 23, item 3).

For a finished run, each of ``--methods`` (the pipeline's methods that read out a correlation:
``ours_network``, ``ours_network_geometric``, ``ours_finetuned``; built from the run's stores and
its last network) matches every evaluation pair once, and each keypoint (and, where the dataset
has dense ground truth, each dense ground-truth point, ``evaluate.dense_stride``) is transferred
two ways from the same correspondence:

* ``adaptive`` (the pipeline's): ``bilinear`` where the point's four cells agree (all valid,
  each match within one target cell of their mean), ``readout`` elsewhere
  (``DenseCorrespondence.transfer(mode='adaptive')``);
* ``readout``: the network's kernel soft-argmax of the bilinear interpolation of the point's four
  cells' correlation rows, for every point (``mode='readout'``);
* ``bilinear``: the bilinear interpolation of the four cells' matches (before issue 23's change).

Printed: pair-wise PCK@0.05 and @0.1 per category and their mean over categories (the tables'
``mean``), dense PCK likewise, the share of points whose four cells agree, and the paired
differences adaptive - bilinear, readout - bilinear and adaptive - readout per pair with a
bootstrap 95 % interval over pairs (``--boot`` resamples, seeded).

Usage (from the repository root):

    .venv/bin/python benchmarks/point_readout_study.py [--run results/default] [--config FILE ...]
        [--methods ours_network,ours_network_geometric] [--max-pairs N | --all-pairs]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from _cli import add_pair_options, pairs_per_category  # noqa: E402
from sopcorr.config import load_config  # noqa: E402
from sopcorr.evaluate.category import EvalCategory  # noqa: E402
from sopcorr.evaluate.dense import ground_truth_field, has_dense_ground_truth, sample_points  # noqa: E402
from sopcorr.evaluate.pck import box_size, correct_keypoints  # noqa: E402
from sopcorr.evaluate.transfer import transfer_points  # noqa: E402
from sopcorr.matchers.base import frame_sources  # noqa: E402
from sopcorr.matchers.learned import learned_checkpoints  # noqa: E402
from sopcorr.matchers.methods import MatcherSettings, build_methods, method_inputs  # noqa: E402

MODES = ("adaptive", "readout", "bilinear")
COMPARE = (("adaptive", "bilinear"), ("readout", "bilinear"), ("adaptive", "readout"))
ALPHAS = (0.05, 0.1)


def transferred(corr, pts: np.ndarray, mode: str) -> np.ndarray:
    """(M, 2) points transferred by ``corr`` in ``mode`` (NaN where not ok)."""
    corr.interpolation = mode
    xy, _, ok = transfer_points(corr, pts)
    return np.where(ok[:, None], xy, np.nan)


def boot_ci(diff: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "results" / "default"))
    ap.add_argument("--config", nargs="*", default=None, help="the run's config files (default: config/config.yaml)")
    ap.add_argument("--methods", default="ours_network,ours_network_geometric")
    add_pair_options(ap)
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / "features").is_dir():
        ap.error(f"needs a finished run: {run}/features not found (snakemake --cores all)")
    config = load_config(*(a.config or [str(REPO / "config" / "config.yaml")]))
    ev = config["evaluate"]
    max_pairs = pairs_per_category(a, config)
    stride = int(ev.get("dense_stride", 4))
    seed = int(config["seed"])
    g = {k: v for k, v in config["flow"]["geometric"].items() if k != "fb_tolerance"}
    settings = MatcherSettings.from_params({"nn": {}, "geometric": {**g, "seed": seed}, "siamese": {}},
                                           {"flow": "cpu", "siamese": "cpu"})
    methods = a.methods.split(",")
    ck = {"model": str(learned_checkpoints(run)[0]),  # the last round's trained network
          "finetuned": str(run / "siamese" / "improved" / "finetuned.pt")}
    cats = sorted(p.name[:-5] for p in (run / "features").glob("*.zarr"))
    need = method_inputs(methods)
    print(f"# {run}: network {ck['model']}; pairs per category: {max_pairs or 'all'}")
    # per method, mode, alpha: per-category lists of per-pair scores (keypoints: hits and counts)
    kp = {(m, md, al): {} for m in methods for md in MODES for al in ALPHAS}
    dn = {(m, md, al): {} for m in methods for md in MODES for al in ALPHAS}
    agree = {}   # (method, 'keypoints' | 'dense') -> [points whose four cells agree, points]
    for c in cats:
        fr = frame_sources(run / "data" / c / "instances.json", run / "features" / f"{c}.zarr",
                           embedding=run / "manifold" / "improved" / c / "embedded.zarr" if "embedding" in need else None,
                           category=c)
        cat = EvalCategory.from_frames(fr["raw"])
        dense = has_dense_ground_truth(cat)
        ms = build_methods(methods, settings, fr, ck)
        for s, t in cat.pairs(max_pairs, seed):
            ks, kt = cat.keypoints(s), cat.keypoints(t)
            idx = np.flatnonzero((ks[:, 2] > 0) & (kt[:, 2] > 0))
            src = gt = None
            if dense:
                src, gt = sample_points(ground_truth_field(cat, s, t, stride), stride)
            for m in ms:
                corr = m.correspondence(s, t)
                for what, pts in (("keypoints", ks[idx, :2] if len(idx) else None), ("dense", src)):
                    if pts is not None and len(pts):
                        n = agree.setdefault((m.name, what), [0, 0])
                        n[0] += int(corr.agreeing(corr.grid.image_to_cell(pts)).sum())
                        n[1] += len(pts)
                for md in MODES:
                    if len(idx):
                        xy = transferred(corr, ks[idx, :2], md)
                        for al in ALPHAS:
                            hit = correct_keypoints(xy, kt[idx, :2], np.ones(len(idx), bool), cat.bbox(t), al)
                            kp[(m.name, md, al)].setdefault(c, []).append((hit.sum(), len(idx)))
                    if dense and len(src):
                        d = np.linalg.norm(transferred(corr, src, md) - gt, axis=1)
                        for al in ALPHAS:
                            dn[(m.name, md, al)].setdefault(c, []).append(
                                float(np.mean(np.nan_to_num(d, nan=np.inf) <= al * box_size(cat.bbox(t)))))

    def report(title, table, pooled):
        if not any(table.values()):
            return
        print(f"\n## {title}")
        print(f"{'method':24s} {'mode':9s} {'alpha':>5s} " + " ".join(f"{c[:10]:>10s}" for c in cats) + f" {'mean':>6s}")
        for (m, md, al), per in table.items():
            vals = [100 * (sum(h for h, _ in per[c]) / max(1, sum(n for _, n in per[c])) if pooled
                           else np.mean(per[c])) for c in cats]
            print(f"{m:24s} {md:9s} {al:5g} " + " ".join(f"{v:10.1f}" for v in vals) + f" {np.mean(vals):6.1f}")
        for m in methods:
            for (x, y), al in ((xy, al) for xy in COMPARE for al in ALPHAS):
                r, b = table[(m, x, al)], table[(m, y, al)]
                if pooled:
                    diff = np.concatenate([[100 * (x[0] - y[0]) / x[1] for x, y in zip(r[c], b[c])] for c in cats])
                else:
                    diff = np.concatenate([100 * (np.array(r[c]) - np.array(b[c])) for c in cats])
                lo, hi = boot_ci(diff, a.boot, seed)
                print(f"  {m} @{al:g}: {x} - {y} per pair {diff.mean():+.2f} [{lo:+.2f}, {hi:+.2f}] "
                      f"({len(diff)} pairs)")

    print("\n## points whose four cells agree (adaptive: their matches interpolated; the rest read out)")
    for (m, what), (k, n) in agree.items():
        print(f"{m:24s} {what:9s} {100 * k / max(1, n):5.1f} % of {n}")
    report("pair-wise PCK (keypoints), per category pooled over keypoints", kp, True)
    report("dense PCK (every dense ground-truth point), per category the mean over pairs", dn, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
