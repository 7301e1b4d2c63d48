"""Cycle confirmation of the pseudo ground truth (issue 23, item 2; :mod:`sopcorr.flow.cycle`):
is a teacher match that other images of the collection confirm more often right?

On a finished synthetic run (dense ground truth from the generator's canonical maps), for the
flow-store pairs of each category and K hubs (``flow.cycle_images``, drawn as the rule draws
them from the run's seed), it computes every pair's confirmation counts with the run's own
pseudo-ground-truth matcher (the direct flows are the store's; only the hub legs are matched,
each ordered leg once per category) and prints, per category and overall:

* ``valid``: the share of all source cells the teacher keeps (the store's ``valid``);
* per level (all valid cells, valid cells with >= 1, >= 2, ... confirmations; and, to see what
  the count could add, cells the forward-backward check rejected but >= 1 / >= 2 hubs
  confirm): the cells' share of the valid cells, the share of them with ground truth (``% GT``:
  the source cell centre's nearest pixel is on the object and visible in both images; the
  rest are mostly background, which has no ground truth) and the **precision** (matches within
  alpha x max(target box h, w) of the dense ground truth, among the cells with ground truth:
  the dense table's alpha and norm, at cell centres instead of every 4th pixel);
* next to each level of valid cells, the same two figures for as many valid cells taken by the
  teacher's own score instead (the highest cosine similarities): does the confirmation tell
  more than the score does?
* the cost: matcher calls for the legs (those that are not already direct pairs) and their
  seconds, per category.

Usage (from the repository root; about 1-2 minutes on 2 CPU cores for the default run):

    .venv/bin/python benchmarks/cycle_study.py [--run results/default] [--config config/config.yaml]
        [--ks 2,4] [--tolerance 1.5] [--alpha 0.1] [--categories bird,car]

``--run``: a finished run's ``results/<run>`` (read only); ``--config``: the run's config (its
``seed`` draws the hubs; default the repository's config/config.yaml). ``--tolerance``: default
the schema's ``flow.cycle_tolerance``. Seconds are wall clock on one torch thread.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _cli import require_paths

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a comma list of integers") from None
    if not ks or any(not 1 <= k <= 255 for k in ks):
        raise argparse.ArgumentTypeError(f"{text!r}: each K must be in 1..255")
    return sorted(set(ks))


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return v


class GroundTruth:
    """Dense ground truth at the source cells of a flow store's pairs (synthetic data)."""

    def __init__(self, dataset, store):
        from sopcorr.data import groundtruth as gt

        self.gt = gt
        self.ds = dataset
        self.store = store
        self.maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _maps(self, i: int):
        if i not in self.maps:
            inst = self.ds.instances[i]
            if not (inst.canonical and inst.parts):
                from sopcorr.errors import DatasetError

                raise DatasetError(f"{inst.id}: no dense ground truth (a synthetic run has it)")
            self.maps[i] = (self.gt.read_canonical(self.ds.path(inst.canonical)),
                            self.gt.read_parts(self.ds.path(inst.parts)))
        return self.maps[i]

    def at_cells(self, i: int, j: int) -> np.ndarray:
        """(H, W, 2) ground-truth target image coords of source cell centres of pair i -> j
        (the nearest pixel to each cell centre; NaN where not visible in both / off the image)."""
        canon_s, parts_s = self._maps(i)
        canon_t, parts_t = self._maps(j)
        grid = self.store.grid(i)
        xy = np.floor(grid.cell_centers_image() + 0.5).astype(np.int64)
        h, w = parts_s.shape
        on = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
        px, py = np.clip(xy[..., 0], 0, w - 1), np.clip(xy[..., 1], 0, h - 1)
        cs = np.where(on[..., None], canon_s[py, px], np.nan).astype(np.float32)
        ps = np.where(on, parts_s[py, px], 0).astype(parts_s.dtype)
        return self.gt.dense_correspondence(cs, ps, canon_t, parts_t)

    def norm(self, j: int) -> float:
        from sopcorr.evaluate.pck import box_size

        inst = self.ds.instances[j]
        if inst.bbox is None:
            h, w = self._maps(j)[1].shape
            return float(max(h - 1, w - 1))
        return box_size(inst.bbox)


def category_study(run: Path, variant: str, cat: str, seed: int, ks: list[int], tol: float, alpha: float):
    """Per K: (per-level tallies, cost); also the category's valid share. Levels and tallies:
    {level: [cells, with GT, correct]}."""
    from sopcorr.flow.cycle import LegCache, cycle_hubs, leg_uses
    from sopcorr.flow.pseudo import FlowStore, category_seed, sample_pairs
    from sopcorr.matchers.base import FrameSource
    from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt

    st = FlowStore.open(run / "flow" / variant / f"{cat}.zarr")
    frames = FrameSource(run / "data" / cat / "instances.json", run / "features" / f"{cat}.zarr",
                         embedding=run / "manifold" / variant / cat / "embedded.zarr", category=cat)
    n = len(frames)
    pool = None
    if st.attrs.get("pairs_split") == "train":
        pool = [k for k, inst in enumerate(frames.instances) if inst.split == "train"]
    pairs = [tuple(int(v) for v in p) for p in st.pairs]
    if pairs != sample_pairs(n, len(pairs), category_seed(seed, cat), ids=pool):
        print(f"  note: {cat}: the store's pairs are not the draw of seed {seed} (another --config?); "
              f"the hubs are drawn with seed {seed}", file=sys.stderr)
    matcher = build_pseudo_gt(PseudoGTParams.from_config(st.attrs["pseudo_gt"], device="cpu"))
    direct = [st.correspondence(p) for p in range(len(pairs))]
    truth = GroundTruth(frames.dataset, st)
    t0 = time.perf_counter()
    gts = [truth.at_cells(i, j) for i, j in pairs]
    correct = []
    for (i, j), corr, g in zip(pairs, direct, gts):
        d = np.linalg.norm(np.asarray(corr.target_xy, np.float64) - g, axis=-1)
        correct.append(np.isfinite(d) & (d <= alpha * truth.norm(j)))
    has_gt = [np.isfinite(g).all(-1) for g in gts]
    gt_seconds = time.perf_counter() - t0
    valid = np.stack([c.valid for c in direct])
    score = np.stack([np.asarray(c.score, np.float64) for c in direct])
    out = {"valid": (int(valid.sum()), int(valid.size)), "gt_seconds": gt_seconds, "by_k": {},
           "by_score": (score[valid], np.stack(has_gt)[valid], np.stack(correct)[valid])}
    for k in ks:
        hubs = cycle_hubs(n, k, category_seed(seed, cat), ids=pool)
        cache = LegCache(matcher, frames, leg_uses(pairs, hubs, direct=False))
        for (i, j), corr in zip(pairs, direct):
            cache.put(i, j, corr)          # a direct pair that is a leg: the store's flow
        conf = np.stack([cache.confirmations(i, j, corr, hubs, tol, st.grid(j))
                         for (i, j), corr in zip(pairs, direct)])
        hg, ok = np.stack(has_gt), np.stack(correct)
        levels = {"valid": valid}
        for m in range(1, len(hubs) + 1):
            levels[f"valid, >={m}"] = valid & (conf >= m)
        for m in (1, 2):
            if m <= len(hubs):
                levels[f"not valid, >={m}"] = ~valid & (conf >= m)
        tallies = {name: [int(sel.sum()), int((sel & hg).sum()), int((sel & ok).sum())]
                   for name, sel in levels.items()}
        out["by_k"][k] = {"tallies": tallies, "hubs": [st.image_ids[h] for h in hubs], "calls": cache.calls,
                          "seconds": cache.seconds, "bound": 2 * len(hubs) * (n - 1), "n_images": n}
    return out


def by_score(scores: np.ndarray, has_gt: np.ndarray, ok: np.ndarray, n: int) -> tuple[int, int]:
    """(with GT, correct) among the ``n`` valid cells of highest score."""
    top = np.argsort(-scores, kind="stable")[:n]
    return int(has_gt[top].sum()), int(ok[top].sum())


def _pct(a, b):
    return f"{100.0 * a / b:6.1f}" if b else "     -"


def print_tables(results: dict, ks: list[int], tol: float, alpha: float) -> None:
    cats = list(results)
    for k in ks:
        print(f"\n## K = {k} hubs per category (tolerance {tol:g} target cells, precision at alpha {alpha:g})\n")
        print(f"{'':<10} {'':<14} {'':>7} {'':>7} {'':>6} {'':>6} {'':>9}   as many valid cells by score")
        print(f"{'category':<10} {'level':<14} {'cells':>7} {'% valid':>7} {'n GT':>6} {'% GT':>6} {'precision':>9}"
              f"   {'% GT':>6} {'precision':>9}")
        total: dict[str, list[int]] = {}
        for cat in cats + ["overall"]:
            if cat == "overall":
                tallies = total
                nv = sum(results[c]["valid"][0] for c in cats)
                sc = [np.concatenate([results[c]["by_score"][q] for c in cats]) for q in range(3)]
            else:
                tallies = results[cat]["by_k"][k]["tallies"]
                nv = results[cat]["valid"][0]
                sc = results[cat]["by_score"]
                for name, t in tallies.items():
                    acc = total.setdefault(name, [0, 0, 0])
                    for q in range(3):
                        acc[q] += t[q]
            for name, (cells, gt, ok) in tallies.items():
                line = (f"{cat:<10} {name:<14} {cells:>7} {_pct(cells, nv):>7} {gt:>6} {_pct(gt, cells):>6} "
                        f"{_pct(ok, gt):>9}")
                if name.startswith("valid"):
                    sgt, sok = by_score(*sc, cells)
                    line += f"   {_pct(sgt, cells):>6} {_pct(sok, sgt):>9}"
                print(line)
        print(f"\ncost of K = {k} (legs that are not direct pairs; bound 2 K (N - 1)):")
        print(f"{'category':<10} {'hub images':<28} {'calls':>6} {'bound':>6} {'seconds':>8}")
        calls = secs = 0
        for cat in cats:
            r = results[cat]["by_k"][k]
            calls += r["calls"]
            secs += r["seconds"]
            hubs = " ".join(h.rsplit("/", 1)[-1] for h in r["hubs"])
            print(f"{cat:<10} {hubs:<28} {r['calls']:>6} {r['bound']:>6} {r['seconds']:>8.1f}")
        print(f"{'overall':<10} {'':<28} {calls:>6} {'':>6} {secs:>8.1f}")
    print("\nvalid share of all source cells (the store's valid):")
    for cat in cats:
        v, a = results[cat]["valid"]
        print(f"  {cat:<10} {_pct(v, a)} %  ({v} of {a} cells)")
    v = sum(results[c]["valid"][0] for c in cats)
    a = sum(results[c]["valid"][1] for c in cats)
    print(f"  {'overall':<10} {_pct(v, a)} %")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="results/default", help="a finished synthetic run's results/<run> folder")
    ap.add_argument("--config", default=str(REPO / "config" / "config.yaml"),
                    help="the run's config (its seed draws the hubs)")
    ap.add_argument("--ks", type=_ks, default=[2, 4], help="comma list of hub counts K (default 2,4)")
    ap.add_argument("--tolerance", type=_positive, default=None,
                    help="target cells (default: the schema's flow.cycle_tolerance)")
    ap.add_argument("--alpha", type=_positive, default=0.1, help="precision threshold x max(target box side)")
    ap.add_argument("--categories", default=None, help="comma list (default: the run's flow stores)")
    args = ap.parse_args(argv)
    run = Path(args.run)
    require_paths(ap, [run], "a finished run (snakemake --cores all; or --run DIR)")
    flow = run / "flow"
    variants = sorted(p.name for p in flow.iterdir() if p.is_dir()) if flow.is_dir() else []
    if not variants:
        ap.error(f"needs a finished run: {flow}/<variant>/<category>.zarr not found")
    variant = "improved" if "improved" in variants else variants[0]
    cats = sorted(p.stem for p in (flow / variant).glob("*.zarr"))
    if args.categories:
        want = [c for c in args.categories.split(",") if c]
        missing = [c for c in want if c not in cats]
        if missing:
            ap.error(f"no flow store for {missing} in {flow / variant} (has: {', '.join(cats)})")
        cats = want
    if not cats:
        ap.error(f"needs a finished run: no flow stores in {flow / variant}")
    require_paths(ap, [Path(args.config)], "the run's config (--config)")
    for cat in cats:
        require_paths(ap, [run / "data" / cat / "instances.json", run / "features" / f"{cat}.zarr",
                           run / "manifold" / variant / cat / "embedded.zarr"], "a finished run")

    import torch

    from sopcorr.config import load_config
    from sopcorr.flow.cycle import CycleParams

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    tol = args.tolerance if args.tolerance is not None else CycleParams().tolerance
    seed = int(cfg["seed"])
    print(f"cycle study: {run} (variant {variant}, seed {seed}), categories {', '.join(cats)}")
    results = {}
    t0 = time.perf_counter()
    for cat in cats:
        t1 = time.perf_counter()
        results[cat] = category_study(run, variant, cat, seed, args.ks, tol, args.alpha)
        print(f"  {cat}: {time.perf_counter() - t1:.1f} s (ground truth {results[cat]['gt_seconds']:.1f} s)",
              flush=True)
    print_tables(results, args.ks, tol, args.alpha)
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
