"""A self-training round's network against its own trained weights (``siamese.round_interpolation``,
issue 23), on a finished run with ``siamese.rounds`` >= 2.

For the run's last round R, three networks of each protocol are read out as ``ours_network``
(the pair protocol: every keypoint of a pair transferred, PCK@0.1 of the target box, the
category's mean over pairs, then the mean over categories):

* ``round1``: round 1's network;
* ``trained``: round R's weights as its training ended, recovered exactly from the checkpoint
  (θ_R′ = (θ_R − (1 − w) θ_{R−1}) / w, with w and θ_{R−1} the checkpoint's record);
* ``interpolated``: round R's checkpoint, what the pipeline uses.

Protocols: ``trained-on`` (the run's network on the categories it trained on) and ``left-out``
(each category's leave-one-out network, ``siamese/improved/without_<cat>/``, on that category:
the ``transfer.csv`` protocol). Each difference gets a bootstrap 95 % interval over pairs,
resampled within each category.

Usage (from the repository root):

    .venv/bin/python benchmarks/round_interpolation_study.py [--run results/pfwillow]
        [--config config/config.yaml config/pfwillow.yaml] [--protocols trained-on,left-out]
        [--all-pairs]

How long: on the dev split's run with its 540 pairs (``evaluate.max_eval_pairs: null``), about
13 min on 2 cores; ``--max-pairs 20`` about 30 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from _cli import add_pair_options, pairs_per_category  # noqa: E402
from sopcorr.config import load_config  # noqa: E402
from sopcorr.evaluate.category import EvalCategory  # noqa: E402
from sopcorr.evaluate.pck import correct_keypoints  # noqa: E402
from sopcorr.evaluate.transfer import transfer_points  # noqa: E402
from sopcorr.matchers.base import frame_sources  # noqa: E402
from sopcorr.matchers.methods import MatcherSettings, build_methods  # noqa: E402

ALPHA = 0.1
NETWORKS = ("round1", "trained", "interpolated")


def trained_weights(interpolated: Path, start: Path, out: Path) -> Path | None:
    """Write round R's trained weights, recovered from its interpolated checkpoint and the
    checkpoint of round R − 1 it started from, to ``out``; None when the checkpoint was not
    interpolated (round_interpolation 1 or round_start afresh)."""
    from sopcorr.siamese.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(interpolated)
    rec = ck.get("round_interpolation")
    if not rec:
        return None
    w = float(rec["weight"])
    start = load_checkpoint(start)["model"]
    ck["model"] = {k: ((v - (1 - w) * start[k].to(v.dtype)) / w if v.is_floating_point() else v)
                   for k, v in ck["model"].items()}
    del ck["round_interpolation"]
    save_checkpoint(out, ck)
    return out


def per_pair_pck(run: Path, category: str, checkpoints: dict, settings, max_pairs, seed: int) -> dict:
    """{network: (P,) per-pair PCK@0.1} of ``ours_network`` with each checkpoint on the category's pairs."""
    fr = frame_sources(run / "data" / category / "instances.json", run / "features" / f"{category}.zarr",
                       category=category)
    cat = EvalCategory.from_frames(fr["raw"])
    matchers = {n: build_methods(["ours_network"], settings, fr, {"model": str(p)})[0] for n, p in checkpoints.items()}
    out = {n: [] for n in checkpoints}
    for s, t in cat.pairs(max_pairs, seed):
        ks, kt = cat.keypoints(s), cat.keypoints(t)
        idx = np.flatnonzero((ks[:, 2] > 0) & (kt[:, 2] > 0))
        if not len(idx):
            continue
        for n, m in matchers.items():
            xy, _, ok = transfer_points(m.correspondence(s, t), ks[idx, :2])
            xy = np.where(ok[:, None], xy, np.nan)
            out[n].append(correct_keypoints(xy, kt[idx, :2], np.ones(len(idx), bool), cat.bbox(t), ALPHA).mean())
    return {n: np.asarray(v) for n, v in out.items()}


def boot_ci(a: dict, b: dict, n: int, seed: int) -> tuple[float, float]:
    """95 % interval of mean over categories of (b − a), pairs resampled within each category."""
    rng = np.random.default_rng(seed)
    cats = sorted(a)
    draws = np.zeros(n)
    for c in cats:
        d = b[c] - a[c]
        draws += d[rng.integers(0, len(d), (n, len(d)))].mean(1)
    draws /= len(cats)
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="results/pfwillow")
    ap.add_argument("--config", nargs="*", default=None,
                    help="the run's config files (default: config/config.yaml config/pfwillow.yaml)")
    ap.add_argument("--protocols", default="trained-on,left-out")
    add_pair_options(ap)
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / "features").is_dir():
        ap.error(f"needs a finished run: {run}/features not found (snakemake --cores all ...)")
    protocols = a.protocols.split(",")
    if not set(protocols) <= {"trained-on", "left-out"}:
        ap.error(f"--protocols: trained-on and/or left-out, got {a.protocols}")
    config = load_config(*(a.config or [REPO / "config" / "config.yaml", REPO / "config" / "pfwillow.yaml"]))
    rounds = int(config["siamese"]["rounds"])
    if rounds < 2:
        ap.error("needs a run with siamese.rounds >= 2 (the config given has one round)")
    max_pairs = pairs_per_category(a, config)
    seed = int(config["seed"])
    g = {k: v for k, v in config["flow"]["geometric"].items() if k != "fb_tolerance"}
    settings = MatcherSettings.from_params({"nn": {}, "geometric": {**g, "seed": seed}, "siamese": {}},
                                           {"flow": "cpu", "siamese": "cpu"})
    cats = sorted(p.name[:-5] for p in (run / "features").glob("*.zarr"))
    root = run / "siamese" / "improved"
    print(f"# {run}: round {rounds} against round 1, ours_network PCK@0.1 per pair; "
          f"pairs per category: {max_pairs or 'all'}")
    with tempfile.TemporaryDirectory() as tmp:
        for proto in protocols:
            scores = {n: {} for n in NETWORKS}
            for c in cats:
                base = root if proto == "trained-on" else root / f"without_{c}"
                last = base / f"round{rounds}" / "model.pt"
                if not last.is_file():
                    ap.error(f"needs a finished run: {last} not found (snakemake ... "
                             f"{'all' if proto == 'trained-on' else run / 'tables' / 'transfer.csv'})")
                before = base / "model.pt" if rounds == 2 else base / f"round{rounds - 1}" / "model.pt"
                trained = trained_weights(last, before, Path(tmp) / f"{proto}_{c}.pt")
                if trained is None:
                    ap.error(f"{last}: not interpolated (siamese.round_interpolation 1): nothing to compare")
                got = per_pair_pck(run, c, {"round1": base / "model.pt", "trained": trained, "interpolated": last},
                                   settings, max_pairs, seed)
                for n in NETWORKS:
                    scores[n][c] = got[n]
            print(f"\n## {proto}: " + ("the run's network on its categories" if proto == "trained-on"
                                       else "each category's leave-one-out network on it (transfer.csv)"))
            print(f"{'network':<14}" + "".join(f"{c:>12}" for c in cats) + f"{'mean':>8}")
            for n in NETWORKS:
                vals = [100 * scores[n][c].mean() for c in cats]
                print(f"{n:<14}" + "".join(f"{v:>12.1f}" for v in vals) + f"{np.mean(vals):>8.1f}")
            for x, y in (("trained", "interpolated"), ("round1", "trained"), ("round1", "interpolated")):
                d = 100 * np.mean([scores[y][c].mean() - scores[x][c].mean() for c in cats])
                lo, hi = boot_ci(scores[x], scores[y], a.boot, seed)
                print(f"{y} - {x}: {d:+.1f}  95% [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
