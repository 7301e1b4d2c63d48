"""Is a difference in pair-wise PCK within noise? A paired bootstrap over a finished run's pairs.

For two methods of the pair-wise table (``results/<run>/eval/<cat>/pairs.json``, the records the
``pair_pck`` table is built from) at one alpha: each pair's PCK over its keypoints visible in
both images (the ``per_pair`` column's terms), the difference B - A per pair, and its 95 %
interval from resampling the pairs with replacement within each category (seeded; the statistic
is the mean over all pairs, as ``per_pair``). Also prints the pair and keypoint counts. A
difference whose interval contains 0 is within noise. ``--run-b`` takes B from a second run of
the same dataset (e.g. another backbone): its pairs must be the same, in the same order.

Usage (from the repository root):

    .venv/bin/python benchmarks/pair_significance.py [--run results/default] [--a nn_raw]
        [--b ours_network] [--run-b RUN] [--alpha 0.1] [--resamples 10000] [--seed 0]

Takes a second. Without a finished run it says what is missing and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import positive_int, require_paths  # noqa: E402


def load(run: Path, records: str = "pairs") -> dict:
    """{category: [records]} of every eval/<cat>/<records>.json under ``run`` (pairs: the
    pair-wise table; inductive, transfer: the generalisation protocols' records)."""
    out = {}
    for p in sorted(run.glob(f"eval/*/{records}.json")):
        out[p.parent.name] = json.loads(p.read_text())["pairs"]
    return out


def per_pair(records: list, method: str, alpha: float):
    for r in records:
        if r["method"] == method and abs(float(r["alpha"]) - alpha) < 1e-9:
            return np.asarray(r["per_pair"], float), int(r["total"])
    return None, 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="results/default")
    ap.add_argument("--a", default="nn_raw", help="the reference method")
    ap.add_argument("--b", default="ours_network", help="the method compared with it")
    ap.add_argument("--run-b", default=None, help="take B from this run (same dataset and pairs; default: --run)")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--records", choices=["pairs", "inductive", "transfer"], default="pairs",
                    help="which records: the pair-wise table (pairs) or a generalisation protocol's")
    ap.add_argument("--resamples", type=positive_int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    run = Path(args.run)
    require_paths(ap, [run / "eval"], "a finished run with pair-wise evaluation (snakemake --cores all)")
    data = load(run, args.records)
    if not data:
        ap.error(f"needs a finished run with pair-wise evaluation: no {run}/eval/<cat>/{args.records}.json")
    run_b = Path(args.run_b) if args.run_b else run
    data_b = load(run_b, args.records) if args.run_b else data
    if set(data_b) != set(data):
        ap.error(f"--run-b {run_b}: categories {sorted(data_b)} differ from {run}'s {sorted(data)}")
    rng = np.random.default_rng(args.seed)
    diffs, boot = [], np.zeros(args.resamples)
    n_all = 0
    print(f"# {run}: {args.b}" + (f" of {run_b}" if args.run_b else "") + f" - {args.a}, per-pair PCK@{args.alpha}")
    print(f"{'category':12s} {'pairs':>5s} {'keypoints':>9s} {args.a:>12s} {args.b:>12s} {'diff':>6s}")
    for cat, recs in data.items():
        a, ka = per_pair(recs, args.a, args.alpha)
        b, kb = per_pair(data_b[cat], args.b, args.alpha)
        if a is None or b is None:
            where, name = (run, args.a) if a is None else (run_b, args.b)
            ap.error(f"{where}/eval/{cat}/{args.records}.json: no records of {name} at alpha {args.alpha}")
        if len(a) != len(b) or ka != kb:
            ap.error(f"{run_b}/eval/{cat}/{args.records}.json: {len(b)} pairs with {kb} keypoints, not the "
                     f"{len(a)} pairs with {ka} keypoints of {run}: not the same pairs")
        d = b - a
        diffs.append(d)
        n_all += len(d)
        idx = rng.integers(0, len(d), (args.resamples, len(d)))
        boot += d[idx].sum(1)
        print(f"{cat:12s} {len(d):5d} {ka:9d} {a.mean():12.1f} {b.mean():12.1f} {d.mean():+6.1f}")
    d = np.concatenate(diffs)
    boot /= n_all
    lo, hi = np.percentile(boot, [2.5, 97.5])
    verdict = "within noise" if lo <= 0 <= hi else ("B above A" if lo > 0 else "B below A")
    print(f"{'all pairs':12s} {n_all:5d} {'':9s} {'':12s} {'':12s} {d.mean():+6.1f}  95% [{lo:+.1f}, {hi:+.1f}]: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
