"""The network study of issue 13: train the correlation network's head on a finished run's
cached grids and teacher, and compare pair-wise PCK@0.1 of

* ``nn_raw``            nearest neighbour on the raw features (the feature store),
* ``teacher``           the improved variant's geometric matcher on raw + embedding (what the
                        pipeline's ``ours_geometric`` row runs),
* ``network``           the network's own read-out (one forward pass, kernel soft-argmax),
* ``nn_learned``        nearest neighbour on the learned descriptors,
* ``geo_learned``       the geometric matcher on the learned descriptors,

on the dataset's pairs, and the **inductive** protocol: each category's images are split in
half by a seeded hash of the instance id, the head is trained on teacher pairs among one half
only and evaluated on the dataset's pairs among the other half, beside the teacher and raw NN on
those pairs. PCK is reported per category (keypoints pooled), as the mean of the categories and
``per_pair`` (each pair's PCK over its keypoints visible in both, averaged over all pairs).

Usage (from the repository root):

    .venv/bin/python benchmarks/network_study.py [--run results/pfwillow] [--teacher all|store]
        [--protocol both|transductive|inductive] [--set key=value ...] [--work DIR]

``--run``: a finished run with ``features/<cat>.zarr``, ``manifold/improved/<cat>/embedded.zarr``
and ``data/<cat>/instances.json`` (the dataset's pairs); ``--teacher store`` trains on the run's
``flow/improved/<cat>.zarr`` (the pipeline's pairs), ``all`` on the teacher recomputed on every
ordered pair (cached under ``--work``, default ``<run>/network_study``). ``--set`` overrides a
``siamese.correlation`` key (``steps=3000``, ``temperature=0.1``, ...), or the evaluation's
``interpolation=nearest|bilinear``. Settings come from ``--config`` (default config/config.yaml
plus config/pfwillow.yaml for a run named pfwillow). Without a finished run it says what is
missing and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sopcorr.config import load_config  # noqa: E402
from sopcorr.data.generic import load_dataset  # noqa: E402
from sopcorr.evaluate.pairs import pair_counts  # noqa: E402
from sopcorr.features.store import FeatureStore  # noqa: E402
from sopcorr.flow.geometric import geometric_correspondence  # noqa: E402
from sopcorr.flow.pseudo import category_seed, pseudo_flows, sample_pairs  # noqa: E402
from sopcorr.matchers.base import FrameSource  # noqa: E402
from sopcorr.matchers.geometric import concat_descriptors  # noqa: E402
from sopcorr.matchers.pseudo import PseudoGTParams, build_pseudo_gt  # noqa: E402
from sopcorr.flow.nn import nearest_neighbour  # noqa: E402
from sopcorr.geometry import DenseCorrespondence  # noqa: E402
from sopcorr.siamese.correlation.data import GridPairs, Teacher, teacher_from_arrays, teacher_from_store  # noqa: E402
from sopcorr.siamese.correlation.net import build_network  # noqa: E402
from sopcorr.siamese.correlation.train import CorrelationSettings, fit, network_spec  # noqa: E402

ALPHA = 0.1
#: the keyword arguments of geometric_correspondence among the flow.geometric keys
GEOMETRIC_KEYS = ("strength", "consensus_radius", "consensus_gate", "prior", "max_models", "min_support",
                  "bandwidth", "ransac_threshold", "ransac_iterations")


def geometric_params(section: dict) -> dict:
    """``flow.geometric`` -> keyword arguments of ``geometric_correspondence``."""
    return {k: section[k] for k in GEOMETRIC_KEYS}


# --------------------------------------------------------------------------- run access


class Category:
    """One category of a finished run: raw and embedded stores, instances (store order), pairs."""

    def __init__(self, run: Path, cat: str):
        self.name = cat
        self.raw = FeatureStore.open(run / "features" / f"{cat}.zarr")
        self.emb = FeatureStore.open(run / "manifold" / "improved" / cat / "embedded.zarr")
        self.flow = run / "flow" / "improved" / f"{cat}.zarr"
        self.paths = (run / "data" / cat / "instances.json", run / "features" / f"{cat}.zarr",
                      run / "manifold" / "improved" / cat / "embedded.zarr")
        self.ds = load_dataset(run / "data" / cat / "instances.json", check_images=False)
        insts = self.ds.by_id()
        self.instances = [insts[i] for i in self.raw.ids]
        self.names = list(self.ds.categories[cat].keypoints)
        idx = {iid: k for k, iid in enumerate(self.raw.ids)}
        self.pairs = [(idx[a], idx[b]) for a, b in self.ds.pairs if a in idx and b in idx]
        self.grids = [self.raw.grid(k) for k in range(len(self.raw))]
        self.valid = np.asarray(self.raw.valid, bool)
        self._raw = np.asarray(self.raw.features[:], np.float32)
        self._emb = np.asarray(self.emb.features[:], np.float32)

    def __len__(self) -> int:
        return len(self.raw)

    def raw_feat(self, i):
        return self._raw[i]

    def concat(self, i, weight):
        return concat_descriptors(self._raw[i], self._emb[i], weight)

    def keypoints(self, i):
        return self.instances[i].keypoint_array(self.names)

    def bbox(self, i):
        return tuple(float(v) for v in self.instances[i].bbox)


def half_split(ids, seed: int) -> np.ndarray:
    """(N,) bool: True for the first half of the images ordered by crc32(seed:id) (train half)."""
    h = np.array([zlib.crc32(f"{seed}:{i}".encode()) for i in ids])
    order = np.argsort(h, kind="stable")
    out = np.zeros(len(ids), bool)
    out[order[: len(ids) // 2]] = True
    return out


def all_pairs_teacher(cat: Category, gcfg: dict, seed: int, work: Path) -> Teacher:
    """The improved variant's teacher (geometric matcher on raw + embedding, forward-backward
    valid) on every ordered pair of the category, cached in ``work``."""
    path = work / f"teacher_all_{cat.name}.npz"
    n = len(cat)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    if path.is_file():
        z = np.load(path)
        out = {k: z[k] for k in ("target_xy", "valid", "score")}
    else:
        t = time.time()
        inst, feats, emb = cat.paths
        frames = FrameSource(inst, feats, embedding=emb, category=cat.name)
        params = PseudoGTParams.from_config({"variant": "improved", "geometric": {**gcfg, "seed": seed}})
        out = pseudo_flows(build_pseudo_gt(params), frames, pairs, progress=True)
        work.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **out)
        os.replace(tmp, path)
        print(f"# teacher on {len(pairs)} pairs of {cat.name}: {time.time() - t:.0f} s", file=sys.stderr)
    return teacher_from_arrays(pairs, out["target_xy"], out["valid"], out["score"], cat.grids)


# --------------------------------------------------------------------------- evaluation


def evaluate(cat: Category, pairs, fn) -> list[tuple[int, int]]:
    """(correct, total) at ALPHA per pair of ``pairs`` for a correspondence function fn(s, t)."""
    out = []
    for s, t in pairs:
        c, n = pair_counts(fn(s, t), cat.keypoints(s), cat.keypoints(t), cat.bbox(t), [ALPHA])[ALPHA]
        out.append((c, n))
    return out


def summarise(per_cat: dict[str, list[tuple[int, int]]]) -> dict:
    """Per category pooled PCK, their mean, and per_pair (mean over all pairs of each pair's PCK)."""
    res = {}
    pp = []
    for cat, cn in per_cat.items():
        c = sum(a for a, _ in cn)
        n = sum(b for _, b in cn)
        res[cat] = 100.0 * c / max(n, 1)
        pp += [100.0 * a / b for a, b in cn if b > 0]
    res["mean"] = float(np.mean([res[c] for c in per_cat]))
    res["per_pair"] = float(np.mean(pp)) if pp else float("nan")
    res["pairs"] = sum(len(v) for v in per_cat.values())
    return res


def nn_fn(cat, feats):
    def fn(s, t):
        return nearest_neighbour(feats(s), feats(t), cat.grids[s], cat.grids[t], cat.valid[s], cat.valid[t])
    return fn


def geo_fn(cat, feats, gkw, seed):
    def fn(s, t):
        return geometric_correspondence(feats(s), feats(t), cat.grids[s], cat.grids[t], cat.valid[s], cat.valid[t],
                                        seed=seed, **gkw)
    return fn


class Learned:
    """A trained head applied to a category's cached grids: descriptors and the read-out."""

    def __init__(self, model, cat: Category, interpolation: str):
        self.model, self.cat, self.interp = model.eval(), cat, interpolation
        with torch.no_grad():
            g = torch.from_numpy(cat._raw).permute(0, 3, 1, 2)
            self.desc = torch.cat([model.describe(g[k:k + 16]) for k in range(0, len(g), 16)])  # (N, D, H, W)
        self.np = self.desc.permute(0, 2, 3, 1).numpy()

    def feats(self, i):
        return self.np[i]

    def geo_readout(self, s, t, gkw, seed):
        """The geometric matcher's location prior (affines fitted to mutual matches of the
        learned descriptors) added to the network's logits, read out by the kernel soft-argmax."""
        from sopcorr.flow import geometric as G
        from sopcorr.siamese.correlation.net import expected_cell, masked_logits, gaussian_1d

        cat = self.cat
        ds, dt = self.np[s], self.np[t]
        hs, ws = ds.shape[:2]
        ht, wt = dt.shape[:2]
        vs, vt = cat.valid[s], cat.valid[t]
        a = G.neighbourhood_descriptors(ds, vs, gkw["consensus_radius"], gkw["consensus_gate"]).reshape(hs * ws, -1)
        b = G.neighbourhood_descriptors(dt, vt, gkw["consensus_radius"], gkw["consensus_gate"]).reshape(ht * wt, -1)
        si, ti, w = G.mutual_matches(a, b, torch.as_tensor(vs.reshape(-1)), torch.as_tensor(vt.reshape(-1)))
        ys, xs = np.divmod(np.arange(hs * ws), ws)
        yt, xt = np.divmod(np.arange(ht * wt), wt)
        w = np.clip(w, 0, None)
        gside = float(max(ht, wt))
        models = G.fit_affine_models(np.c_[xs[si], ys[si]], np.c_[xt[ti], yt[ti]], w,
                                     threshold=gkw["ransac_threshold"] * gside, iterations=gkw["ransac_iterations"],
                                     seed=seed, max_models=gkw["max_models"] if gkw["prior"] == "piecewise" else 1,
                                     min_support=gkw["min_support"])
        which = G.assign_models(np.c_[xs, ys], models, np.c_[xs[si], ys[si]], w, gkw["bandwidth"] * float(max(hs, ws)))
        pred = np.zeros((hs * ws, 2))
        for k, m in enumerate(models):
            pred[which == k] = m.apply(np.c_[xs, ys][which == k])
        pred = torch.as_tensor(pred, dtype=torch.float32)
        spec = self.model.spec
        with torch.no_grad():
            corr = torch.bmm(self.desc[s:s + 1].flatten(2).transpose(1, 2), self.desc[t:t + 1].flatten(2))
            lam = self.prior_strength if self.prior_strength is not None else gkw["strength"]
            d2 = (torch.as_tensor(xt, dtype=torch.float32)[None] - pred[:, :1]) ** 2 + \
                 (torch.as_tensor(yt, dtype=torch.float32)[None] - pred[:, 1:]) ** 2
            obj = corr[0] - lam * d2 / gside ** 2
            logits = masked_logits(obj[None], torch.as_tensor(vt.reshape(1, -1)), spec.temperature)
            idx = logits.argmax(-1)
            if spec.readout_sigma > 0:
                kr = gaussian_1d(torch.div(idx, wt, rounding_mode="floor"), ht, spec.readout_sigma)
                kc = gaussian_1d(idx % wt, wt, spec.readout_sigma)
                logits = (logits.reshape(1, -1, ht, wt) + kr[..., :, None] + kc[..., None, :]).reshape(1, -1, ht * wt)
            cells = expected_cell(torch.softmax(logits, -1), (ht, wt))[0].numpy().reshape(hs, ws, 2)
            score = corr[0].gather(1, idx[0][:, None])[:, 0].numpy().reshape(hs, ws)
        return DenseCorrespondence(target_xy=cat.grids[t].cell_to_image(cells), score=score,
                                   valid=vs.copy(), grid=cat.grids[s], interpolation=self.interp)

    prior_strength = None

    def readout(self, s, t):
        cat = self.cat
        with torch.no_grad():
            vt = torch.from_numpy(cat.valid[t]).reshape(1, -1)
            _, cells, score = self.model.match(self.desc[s:s + 1], self.desc[t:t + 1], vt)
        h, w = cat.valid[s].shape
        cells = cells[0].numpy().reshape(h, w, 2)
        return DenseCorrespondence(target_xy=cat.grids[t].cell_to_image(cells), score=score[0].numpy().reshape(h, w),
                                   valid=cat.valid[s].copy(), grid=cat.grids[s], interpolation=self.interp)


# --------------------------------------------------------------------------- training


def train_head(cats, teachers, config, overrides, seed, device="cpu", load=None, save=None):
    section = json.loads(json.dumps(config["siamese"]))
    for k, v in overrides.items():
        section["correlation"][k] = v
    c0 = cats[0]
    spec = network_spec(section, config["backbone"], c0.raw.attrs, c0.raw.shape[-1])
    cfg = CorrelationSettings.from_section(section, seed)
    grids = torch.cat([torch.from_numpy(np.asarray(c.raw.features[:], np.float16)) for c in cats])
    valid = torch.cat([torch.from_numpy(c.valid) for c in cats])
    off = np.cumsum([0] + [len(c) for c in cats])
    teacher = Teacher(np.concatenate([t.pairs + o for t, o in zip(teachers, off)]),
                      np.concatenate([t.target for t in teachers]), np.concatenate([t.weight for t in teachers]))
    data = GridPairs(grids, valid, teacher, c0.raw.stride, c0.raw.input_size)
    torch.manual_seed(seed)
    model = build_network(spec, with_encoder=False)
    if load is not None:
        model.load_state_dict(torch.load(load, weights_only=True))
        return model, dict(seconds=0.0, cpu=0.0, pairs=len(data), loss_first=float("nan"), loss_last=float("nan"))
    import tempfile

    t, c = time.time(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        hist = fit(model, data, cfg, Path(d) / "m.pt", device=device, progress=False, resume=False)
    if save is not None:
        torch.save(model.state_dict(), save)
    return model, dict(seconds=time.time() - t, cpu=time.process_time() - c, pairs=len(data),
                       loss_first=float(np.mean(hist[:20])), loss_last=float(np.mean(hist[-50:])))


# --------------------------------------------------------------------------- main


def parse_value(v: str):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(v.lower(), v)


def report(title, rows, cats):
    print(f"\n## {title}")
    head = f"{'method':14s} " + " ".join(f"{c[:9]:>9s}" for c in cats) + f" {'mean':>7s} {'per_pair':>8s} {'pairs':>6s}"
    print(head)
    for name, r in rows.items():
        print(f"{name:14s} " + " ".join(f"{r[c]:9.1f}" for c in cats) + f" {r['mean']:7.1f} {r['per_pair']:8.1f} {r['pairs']:6d}")
    sys.stdout.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=str(REPO / "results" / "pfwillow"))
    ap.add_argument("--config", nargs="*", default=None)
    ap.add_argument("--categories", default=None, help="comma list (default: every features/<cat>.zarr)")
    ap.add_argument("--teacher", choices=["all", "store"], default="all")
    ap.add_argument("--protocol", choices=["both", "transductive", "inductive", "transfer", "all"], default="both")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--work", default=None)
    ap.add_argument("--save", default=None, help="save the trained heads to SAVE.<protocol>.pt")
    ap.add_argument("--load", default=None, help="load the heads from LOAD.<protocol>.pt instead of training")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="nn_raw,teacher,network,network_bilinear,nn_learned,geo_learned,geo_readout",
                    help="comma list of the methods to evaluate (baselines' per-pair results are cached in --work)")
    ap.add_argument("--max-pairs", type=int, default=None, help="evaluate at most this many pairs per category (seeded)")
    ap.add_argument("--teacher-pairs", type=int, default=None, metavar="N",
                    help="with --teacher all: train on N ordered pairs per category drawn as the pipeline's "
                         "flow.pairs_per_category draws them (N = the run's value reproduces --teacher store)")
    args = ap.parse_args(argv)
    run = Path(args.run)
    need = ["features/<cat>.zarr", "manifold/improved/<cat>/embedded.zarr", "data/<cat>/instances.json"]
    if args.teacher == "store":
        need.append("flow/improved/<cat>.zarr")
    cats = args.categories.split(",") if args.categories else sorted(p.stem for p in (run / "features").glob("*.zarr"))
    missing = [n.replace("<cat>", c) for c in cats for n in need if not (run / n.replace("<cat>", c)).exists()]
    if not cats or missing:
        print(__doc__.split("Usage")[1].strip() if "Usage" in __doc__ else "", file=sys.stderr)
        print(f"\nnetwork_study: {run} is not a finished run: it needs {', '.join(need)} for every category"
              + (f"; missing: {', '.join(missing[:4])}" if missing else "; no categories found"), file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg_files = args.config or (["config/config.yaml"] + (["config/pfwillow.yaml"] if run.name == "pfwillow" else []))
    config = load_config(*[str(REPO / f) if not Path(f).is_absolute() else f for f in cfg_files])
    seed = int(config["seed"])
    overrides = {}
    interpolation = "nearest"
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k == "interpolation":
            interpolation = v
        else:
            overrides[k] = parse_value(v)
    work = Path(args.work) if args.work else run / "network_study"
    gcfg = config["flow"]["geometric"]
    gkw = geometric_params(gcfg)
    ew = float(gcfg["embedding_weight"])
    data = [Category(run, c) for c in cats]
    print(f"# run {run}, categories {cats}, teacher {args.teacher}"
          + (f" ({args.teacher_pairs} pairs per category)" if args.teacher == "all" and args.teacher_pairs else "")
          + f", overrides {overrides}, interpolation {interpolation}")
    if args.max_pairs:
        for c in data:
            if len(c.pairs) > args.max_pairs:
                keep = np.sort(np.random.default_rng(seed).choice(len(c.pairs), args.max_pairs, replace=False))
                c.pairs = [c.pairs[k] for k in keep]

    def teachers_for(keep_images=None):
        out = []
        for c in data:
            t = all_pairs_teacher(c, gcfg, seed, work) if args.teacher == "all" else teacher_from_store(c.flow, c.raw)
            if args.teacher == "all" and args.teacher_pairs:
                drawn = set(sample_pairs(len(c), args.teacher_pairs, category_seed(seed, c.name)))
                t = t.subset(np.array([(int(a), int(b)) in drawn for a, b in t.pairs]))
            if keep_images is not None:
                k = keep_images[c.name]
                t = t.subset(k[t.pairs[:, 0]] & k[t.pairs[:, 1]])
            out.append(t)
        return out

    def methods_for(model):
        ms = {}
        if model is not None:
            learned = {c.name: Learned(model, c, interpolation) for c in data}
            other = {c.name: Learned(model, c, "bilinear" if interpolation == "nearest" else "nearest") for c in data}
            ms["network"] = lambda c: learned[c.name].readout
            ms["network_" + ("bilinear" if interpolation == "nearest" else "nearest")] = lambda c: other[c.name].readout
            ms["nn_learned"] = lambda c: nn_fn(c, learned[c.name].feats)
            ms["geo_learned"] = lambda c: geo_fn(c, learned[c.name].feats, gkw, seed)
            bil = other if interpolation == "nearest" else learned
            ms["geo_readout"] = lambda c: (lambda s, t: bil[c.name].geo_readout(s, t, gkw, seed))
        return ms

    def baselines():
        return {"nn_raw": lambda c: nn_fn(c, c.raw_feat),
                "teacher": lambda c: geo_fn(c, lambda i, c=c: c.concat(i, ew), gkw, seed)}

    wanted = args.methods.split(",")

    def table(methods, pairs_of):
        rows = {}
        for name, mk in methods.items():
            if name not in wanted:
                continue
            per = {}
            for c in data:
                pairs = pairs_of(c)
                cache = work / f"baseline_{name}_{c.name}.json" if name in ("nn_raw", "teacher") else None
                known = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
                todo = [p for p in pairs if f"{p[0]},{p[1]}" not in known]
                if todo:
                    for p, cn in zip(todo, evaluate(c, todo, mk(c))):
                        known[f"{p[0]},{p[1]}"] = cn
                    if cache is not None:
                        work.mkdir(parents=True, exist_ok=True)
                        cache.write_text(json.dumps(known))
                per[c.name] = [tuple(known[f"{p[0]},{p[1]}"]) for p in pairs]
            rows[name] = summarise(per)
        return rows

    if args.protocol in ("both", "all", "transductive"):
        model, info = train_head(data, teachers_for(), config, overrides, seed,
                                 load=args.load and f"{args.load}.transductive.pt", save=args.save and f"{args.save}.transductive.pt")
        print(f"# transductive: {info['pairs']} teacher pairs, {info['seconds']:.0f} s ({info['cpu']:.0f} CPU s), loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}")
        ms = baselines()
        ms.update(methods_for(model))
        report("transductive (trained on teacher pairs of all images; evaluated on the dataset's pairs)",
               table(ms, lambda c: c.pairs), cats)
    if args.protocol in ("both", "all", "inductive"):
        halves = {c.name: half_split(c.raw.ids, seed) for c in data}
        model, info = train_head(data, teachers_for(halves), config, overrides, seed,
                                 load=args.load and f"{args.load}.inductive.pt", save=args.save and f"{args.save}.inductive.pt")
        print(f"# inductive: {info['pairs']} teacher pairs among the train halves, {info['seconds']:.0f} s ({info['cpu']:.0f} CPU s), "
              f"loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}")
        ms = baselines()
        ms.update(methods_for(model))
        held = lambda c: [(s, t) for s, t in c.pairs if not halves[c.name][s] and not halves[c.name][t]]  # noqa: E731
        report("inductive (trained on teacher pairs among one half of the images; evaluated on the dataset's "
               "pairs among the other half)", table(ms, held), cats)
    if args.protocol in ("transfer", "all"):
        # leave one category out: each category's pairs matched by a head trained on the others'
        rows: dict[str, dict] = {}
        for left in data:
            others = [c for c in data if c is not left]
            if not others:
                break
            tset = [all_pairs_teacher(c, gcfg, seed, work) if args.teacher == "all" else teacher_from_store(c.flow, c.raw)
                    for c in others]
            model, info = train_head(others, tset, config, overrides, seed,
                                     load=args.load and f"{args.load}.without_{left.name}.pt",
                                     save=args.save and f"{args.save}.without_{left.name}.pt")
            print(f"# transfer to {left.name}: {info['pairs']} teacher pairs of the other categories, "
                  f"{info['seconds']:.0f} s, loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}")
            ms = baselines()
            ms.update(methods_for(model))
            one = data
            data = [left]
            try:
                r = table(ms, lambda c: c.pairs)
            finally:
                data = one
            for name, v in r.items():
                rows.setdefault(name, {"per": {}})["per"][left.name] = v
        out = {}
        for name, r in rows.items():
            per = r["per"]
            out[name] = {**{c: per[c][c] for c in per}, "mean": float(np.mean([per[c][c] for c in per])),
                         "per_pair": float(np.sum([per[c]["per_pair"] * per[c]["pairs"] for c in per])
                                           / max(1, sum(per[c]["pairs"] for c in per))),
                         "pairs": sum(per[c]["pairs"] for c in per)}
        report("leave one category out (each category matched by a head trained on the other categories' "
               "teacher pairs)", out, [c.name for c in data])
    return 0


if __name__ == "__main__":
    sys.exit(main())
