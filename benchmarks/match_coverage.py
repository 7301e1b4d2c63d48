"""Could ``sopcorr match --run`` recognise a photo's category from the run's own features, with no
labels? This measures the candidate rule the fall-back (:mod:`sopcorr.matchers.coverage`) does
*not* use, and why: a nearest-prototype recogniser.

An image's global descriptor is the unit mean of its unit feature vectors over the cells on the
image (the run's feature stores); a category's prototype the unit mean of its images'
descriptors, its threshold the lowest leave-one-out cosine of one of its own images to the
prototype of the others; a pair is accepted as a category when both images are.

* **leave one category out**: prototypes of every category but one; the left-out category's
  images and dataset pairs should *not* be accepted (an accepted pair would get a network that
  never saw its category: the false accepts);
* **inductive**: prototypes of each category's fit half (``evaluate.generalisation.half_split``
  with ``--seed``); the held-out half's images and pairs should be accepted as their own
  category (true accepts); accepted as another category counts as wrong.

Usage (from the repository root, on finished runs; no arguments: results/default and, when
present, results/pfwillow):

    .venv/bin/python benchmarks/match_coverage.py [RUN ...] [--seed 0]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sopcorr.data.generic import load_dataset  # noqa: E402
from sopcorr.evaluate.generalisation import half_split  # noqa: E402
from sopcorr.features.store import FeatureStore  # noqa: E402
from sopcorr.matchers.coverage import run_categories  # noqa: E402


def _unit(a: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(a, axis=axis, keepdims=True)
    return a / np.maximum(n, 1e-12)


def global_descriptors(features: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, C) unit global descriptors: the mean of the unit feature vectors (N, H, W, C) over
    each image's valid cells (N, H, W) (every cell when none is valid), normalised."""
    f = _unit(np.asarray(features, np.float32))
    v = np.asarray(valid, bool)
    v = v | ~v.reshape(len(v), -1).any(1)[:, None, None]
    s = np.einsum("nhwc,nhw->nc", f, v.astype(np.float32))
    return _unit(s / v.reshape(len(v), -1).sum(1)[:, None])


def fit_prototypes(descriptors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per category (in the dict's order) its prototype (K, C), the unit mean of its (N_k, C)
    unit descriptors, and its threshold (K,): the lowest leave-one-out cosine of one of its
    images to the unit mean of the others (a category of one image: that image's cosine to
    itself, 1)."""
    protos, thr = [], []
    for d in descriptors.values():
        d = np.asarray(d, np.float64)
        s = d.sum(0)
        protos.append(_unit(s))
        if len(d) < 2:
            thr.append(1.0)
            continue
        loo = _unit(s[None] - d)                      # (N, C): the mean of the others
        thr.append(float(np.min(np.sum(loo * d, 1))))
    return np.asarray(protos, np.float32), np.asarray(thr, np.float32)


@dataclass(frozen=True)
class CategoryPrototypes:
    """A run's categories as prototypes of global descriptors (module docstring).

    names (K,), prototypes (K, C), thresholds (K,); the feature setting they were computed
    with (backbone, input_size, layers, relu), which the photos' features must share."""

    names: tuple[str, ...]
    prototypes: np.ndarray
    thresholds: np.ndarray
    backbone: str = ""
    input_size: int = 0
    layers: tuple[str, ...] = ()
    relu: bool = False

    def recognise(self, descriptors: np.ndarray) -> list[tuple[str | None, float]]:
        """Per (N, C) unit descriptor: (the nearest prototype's category when its cosine reaches
        that category's threshold, else None; the cosine)."""
        sim = np.asarray(descriptors, np.float32) @ self.prototypes.T      # (N, K)
        best = sim.argmax(1)
        return [(self.names[k] if sim[i, k] >= self.thresholds[k] else None, float(sim[i, k]))
                for i, k in enumerate(best)]

    def pair_category(self, descriptors: np.ndarray) -> str | None:
        """The category both images of a pair (2, C) are accepted as, else None."""
        (a, _), (b, _) = self.recognise(descriptors)
        return a if a is not None and a == b else None


def category_data(run: Path, cat: str):
    st = FeatureStore.open(run / "features" / f"{cat}.zarr")
    desc = global_descriptors(np.asarray(st.features[:], np.float32), np.asarray(st.valid, bool))
    ds = load_dataset(run / "data" / cat / "instances.json", check_images=False)
    idx = {iid: k for k, iid in enumerate(st.ids)}
    pairs = [(idx[a], idx[b]) for a, b in ds.pairs if a in idx and b in idx]
    return list(st.ids), desc, pairs


def pair_verdicts(protos: CategoryPrototypes, desc: np.ndarray, pairs) -> list[str | None]:
    rec = protos.recognise(desc)
    return [rec[a][0] if rec[a][0] is not None and rec[a][0] == rec[b][0] else None for a, b in pairs]


def measure(run: Path, seed: int) -> None:
    cats = run_categories(run)
    data = {c: category_data(run, c) for c in cats}
    print(f"\n## {run} ({len(cats)} categories: {', '.join(cats)})")
    print("\nleave one category out (false accepts: the left-out category's images / pairs accepted as a trained one)")
    print(f"{'left out':12s} {'images':>7s} {'accepted':>9s} {'pairs':>6s} {'accepted':>9s}  {'median cosine':>13s} {'lowest threshold':>16s}")
    for left in cats:
        keep = [c for c in cats if c != left]
        if not keep:
            break
        protos = CategoryPrototypes(tuple(keep), *fit_prototypes({c: data[c][1] for c in keep}))
        _, desc, pairs = data[left]
        rec = protos.recognise(desc)
        acc_img = sum(r is not None for r, _ in rec)
        acc_pair = sum(v is not None for v in pair_verdicts(protos, desc, pairs))
        print(f"{left:12s} {len(desc):7d} {acc_img:9d} {len(pairs):6d} {acc_pair:9d}  "
              f"{float(np.median([s for _, s in rec])):13.3f} {float(protos.thresholds.min()):16.3f}")
    print("\ninductive (prototypes of the fit halves; the held-out halves' images and pairs)")
    print(f"{'category':12s} {'images':>7s} {'own':>5s} {'other':>6s} {'pairs':>6s} {'own':>5s} {'other':>6s}")
    halves = {c: half_split(data[c][0], seed) for c in cats}
    protos = CategoryPrototypes(tuple(cats), *fit_prototypes({c: data[c][1][halves[c]] for c in cats}))
    tot = np.zeros(6, int)
    for c in cats:
        ids, desc, pairs = data[c]
        held = ~halves[c]
        rec = [r for r, h in zip(protos.recognise(desc), held) if h]
        hp = [(a, b) for a, b in pairs if held[a] and held[b]]
        v = pair_verdicts(protos, desc, hp)
        row = np.array([len(rec), sum(r == c for r, _ in rec), sum(r not in (None, c) for r, _ in rec),
                        len(hp), sum(x == c for x in v), sum(x not in (None, c) for x in v)])
        tot += row
        print(f"{c:12s} {row[0]:7d} {row[1]:5d} {row[2]:6d} {row[3]:6d} {row[4]:5d} {row[5]:6d}")
    print(f"{'all':12s} {tot[0]:7d} {tot[1]:5d} {tot[2]:6d} {tot[3]:6d} {tot[4]:5d} {tot[5]:6d}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    runs = [Path(r) for r in args.runs] or [p for p in (REPO / "results" / "default", REPO / "results" / "pfwillow")
                                             if (p / "features").is_dir()]
    if not runs:
        print("match_coverage: no finished run (results/default: make demo)", file=sys.stderr)
        return 2
    for r in runs:
        measure(r, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
