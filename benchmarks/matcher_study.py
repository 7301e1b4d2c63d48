"""The matcher study of issue 8 (docs/RESULTS.md, "Which matcher"): variants of the improved
variant's geometric matcher (sopcorr.flow.geometric) on the synthetic default and the PF-WILLOW
dev split, pair-wise PCK@0.1 (and dense PCK@0.1 on synthetic data) next to raw nearest neighbour.

Needs a finished run (the feature stores and the improved manifold of each category): the
synthetic default (``snakemake --cores all``) for ``syn``, the dev split (``snakemake --cores all
--configfile config/config.yaml config/pfwillow.yaml``) for ``dev``. Run from the repository root:

    .venv/bin/python benchmarks/matcher_study.py syn [VARIANTS] [MAX_PAIRS] [PAIR_SEED]
    .venv/bin/python benchmarks/matcher_study.py dev [VARIANTS]

VARIANTS is a comma list of the names in VARIANTS below (default: all); ``syn`` reads
results/default (or $RUN, or --run), ``dev`` results/pfwillow. Time: about a minute per variant
and category on ``syn`` (20 pairs) on 2 cores, several minutes per variant on ``dev`` (540
pairs). With no arguments it prints this usage and exits with status 2. The study chose its settings on
60 synthetic pairs drawn with seed 1 (``syn NAMES 60 1``), not on the 20 pairs of the tables.
Variants re-implement the matcher here with knobs the library does not keep (truncated prior,
union of affines, centre-weighted or label-restricted consensus, consensus only for the
affine, per-pair radius choice); ``lib`` is the library's configured matcher.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _cli import nonnegative_int, positive_int, require_paths

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _import_heavy() -> None:
    """The modules the study computes with, imported after the command line and the run's
    files are checked (a usage error answers at once, without loading torch)."""
    global torch, F, load_config, EvalCategory, run_dense_evaluation, run_pair_evaluation, G
    global DenseCorrespondence, frame_sources, concat_descriptors, MatcherSettings, Method, build_method
    import torch
    import torch.nn.functional as F
    from sopcorr.config import load_config
    from sopcorr.evaluate.category import EvalCategory
    from sopcorr.evaluate.dense import run_dense_evaluation
    from sopcorr.evaluate.pairs import run_pair_evaluation
    from sopcorr.flow import geometric as G
    from sopcorr.geometry import DenseCorrespondence
    from sopcorr.matchers.base import frame_sources
    from sopcorr.matchers.geometric import concat_descriptors
    from sopcorr.matchers.methods import MatcherSettings, Method, build_method

    torch.set_num_threads(1)


class _Fn:
    """A matcher whose frames are instance indices (this study's variants are closures)."""

    def __init__(self, fn):
        self.fn = fn

    def correspondence(self, s, t):
        return self.fn(s, t)


class StudyContext:
    """The improved variant's stores of one category (explicit paths of a finished run)."""

    def __init__(self, run_dir, cat, config):
        r = Path(run_dir)
        m = r / "manifold" / "improved" / cat
        self.frames = frame_sources(r / "data" / cat / "instances.json", r / "features" / f"{cat}.zarr",
                                    embedding=m / "embedded.zarr", embedding_iter1=m / "embedded_iter1.zarr",
                                    labels=m / "labels.zarr")
        self.cat = EvalCategory.from_frames(self.frames["raw"])
        g = {**config["flow"]["geometric"], "seed": config["seed"]}
        g.pop("fb_tolerance")
        self.settings = MatcherSettings.from_params({"nn": {}, "geometric": g}, {"flow": "cpu"})

    def store(self, kind):
        src = self.frames["raw"] if kind == "raw" else self.frames[{"embed": "embedding"}.get(kind, kind)]
        return src.features if kind == "raw" else src.embedding

    def get_labels(self):
        return self.frames["embedding"].labels


def nd(feat, valid, radius, cw):
    f = F.normalize(torch.as_tensor(np.asarray(feat, np.float32)), dim=-1, eps=1e-12)
    f = f * torch.as_tensor(np.asarray(valid), dtype=torch.float32)[..., None]
    if radius <= 0: return f
    h, w, c = f.shape; k = 2*radius+1
    u = F.unfold(f.permute(2,0,1)[None], k, padding=radius)[0].reshape(c, k*k, h*w)
    wts = torch.full((k*k,), (1-cw)/(k*k-1)); wts[(k*k)//2] = cw
    u = u * wts.sqrt()[None, :, None]
    return F.normalize(u.reshape(c*k*k, h*w).T.reshape(h, w, -1), dim=-1, eps=1e-12)

def gated(feat, valid, radius, gamma=None, labels=None, base=1.0):
    f = F.normalize(torch.as_tensor(np.asarray(feat, np.float32)), dim=-1, eps=1e-12)
    f = f * torch.as_tensor(np.asarray(valid), dtype=torch.float32)[..., None]
    h, w, c = f.shape; k = 2*radius+1
    u = F.unfold(f.permute(2,0,1)[None], k, padding=radius)[0].reshape(c, k*k, h*w)
    centre = u[:, (k*k)//2, :]
    if labels is not None:
        L = torch.as_tensor(np.asarray(labels, np.float32))[None, None]
        ul = F.unfold(L + 1, k, padding=radius)[0]            # (k*k, h*w), 0 = outside
        wts = (ul == (L.reshape(1, -1) + 1)).float()
    else:
        cos = (u * centre[:, None, :]).sum(0)                   # (k*k, h*w)
        wts = cos.clamp(min=0) ** gamma
    wts[(k*k)//2] = base
    u = u * wts.sqrt()[None]
    return F.normalize(u.reshape(c*k*k, h*w).T.reshape(h, w, -1), dim=-1, eps=1e-12)

def matcher(ds, dt, gs, gt, vs, vt, strength=8.0, radius=1, thr=0.08, prior="global", cw=None, prior_radius=None, gamma=None, lab=None,
            max_models=3, min_support=0.15, bandwidth=0.2, trunc=None, seed=0):
    hs, ws = ds.shape[:2]; ht, wt = dt.shape[:2]
    if gamma is not None or lab is not None:
        a = gated(ds, vs, radius, gamma, lab[0] if lab else None).reshape(hs*ws, -1)
        b = gated(dt, vt, radius, gamma, lab[1] if lab else None).reshape(ht*wt, -1)
    elif cw is None:
        a = G.neighbourhood_descriptors(ds, vs, radius).reshape(hs*ws, -1)
        b = G.neighbourhood_descriptors(dt, vt, radius).reshape(ht*wt, -1)
    else:
        a = nd(ds, vs, radius, cw).reshape(hs*ws, -1); b = nd(dt, vt, radius, cw).reshape(ht*wt, -1)
    if prior_radius is not None:
        pa = G.neighbourhood_descriptors(ds, vs, prior_radius).reshape(hs*ws, -1)
        pb = G.neighbourhood_descriptors(dt, vt, prior_radius).reshape(ht*wt, -1)
    else:
        pa, pb = a, b
    vs_t = torch.as_tensor(vs.reshape(-1)); vt_t = torch.as_tensor(vt.reshape(-1))
    sim = a @ b.T
    gside = float(max(ht, wt))
    ys, xs = np.divmod(np.arange(hs*ws), ws); yt, xt = np.divmod(np.arange(ht*wt), wt)
    tx = torch.as_tensor(xt, dtype=torch.float32); ty = torch.as_tensor(yt, dtype=torch.float32)
    obj = sim
    if strength > 0:
        si, ti, w = G.mutual_matches(pa, pb, vs_t, vt_t)
        src = np.c_[xs[si], ys[si]].astype(float); dst = np.c_[xt[ti], yt[ti]].astype(float)
        w = np.clip(w, 0, None)
        models = []
        remaining = np.ones(len(si), bool)
        total = w.sum()
        for k in range(max_models if prior != "global" else 1):
            idx = np.nonzero(remaining)[0]
            if len(idx) < 3: break
            aff = G.fit_affine_ransac(src[idx], dst[idx], w[idx], threshold=thr*gside, seed=seed+k)
            inl = idx[aff.inliers]
            if k > 0 and (len(inl) < 4 or w[inl].sum() < min_support*total): break
            models.append((aff, inl))
            remaining[inl] = False
        if not models:
            models = [(G.Affine(np.array([[1.,0],[0,1],[0,0]]), np.zeros(0,bool)), np.zeros(0,int))]
        d2s = []
        for aff, inl in models:
            pred = torch.as_tensor(aff.apply(np.c_[xs, ys]), dtype=torch.float32)
            d2s.append((tx[None]-pred[:, :1])**2 + (ty[None]-pred[:, 1:])**2)
        if len(models) == 1:
            d2 = d2s[0]
        elif prior == "union":
            d2 = torch.stack(d2s).min(0).values
        else:  # piecewise: assign each source cell to the model with highest kernel density of inliers
            cell = np.c_[xs, ys].astype(float)
            dens = []
            for aff, inl in models:
                dd = ((cell[:, None, :] - src[inl][None]) ** 2).sum(-1) / gside**2
                dens.append((w[inl][None] * np.exp(-dd / (2*bandwidth**2))).sum(1))
            k = np.argmax(np.stack(dens), 0)
            d2 = torch.stack(d2s)[torch.as_tensor(k), torch.arange(hs*ws)]
        pen = d2 / gside**2
        if trunc is not None:
            pen = torch.clamp(pen, max=trunc**2)
        obj = sim - strength * pen
    obj = torch.where(vt_t[None], obj, torch.tensor(-float("inf")))
    j = obj.argmax(1)
    score = sim.gather(1, j[:, None])[:, 0].numpy().reshape(hs, ws)
    j = j.numpy()
    cells = np.stack([xt[j], yt[j]], 1).astype(float)
    return DenseCorrespondence(target_xy=gt.cell_to_image(cells).reshape(hs, ws, 2), score=score,
                               valid=vs.copy(), grid=gs, interpolation="nearest")

STATS = {}
def support(ds, dt, vs, vt, radius, thr=0.08, seed=0):
    hs, ws = ds.shape[:2]; ht, wt = dt.shape[:2]
    a = G.neighbourhood_descriptors(ds, vs, radius).reshape(hs*ws, -1)
    b = G.neighbourhood_descriptors(dt, vt, radius).reshape(ht*wt, -1)
    si, ti, w = G.mutual_matches(a, b, torch.as_tensor(vs.reshape(-1)), torch.as_tensor(vt.reshape(-1)))
    ys, xs = np.divmod(np.arange(hs*ws), ws); yt, xt = np.divmod(np.arange(ht*wt), wt)
    w = np.clip(w, 0, None)
    aff = G.fit_affine_ransac(np.c_[xs[si], ys[si]], np.c_[xt[ti], yt[ti]], w, threshold=thr*max(ht, wt), seed=seed)
    return aff.inliers.sum() / max(vs.sum(), 1), w[aff.inliers].sum() / max(vs.sum(), 1)

def auto_matcher(ds, dt, gs, gt, vs, vt, crit=0, radii=(0, 1), **kw):
    sup = [support(ds, dt, vs, vt, r)[crit] for r in radii]
    r = radii[int(np.argmax(sup))]
    STATS.setdefault("radius", []).append(r)
    return matcher(ds, dt, gs, gt, vs, vt, radius=r, **kw)

def libmethod(ctx, name, **kw):
    m = build_method("geo_concat", ctx.settings, ctx.frames)
    return Method(name, name, m.matcher, m.frames)

def method(ctx, name, use_emb=True, weight=0.5, embed="embed", **kw):
    if kw.get("lib"): return libmethod(ctx, name)
    kw=dict(kw)
    raw = ctx.store("raw"); emb = ctx.store(embed) if use_emb else None
    cache = {}
    def desc(i):
        if i not in cache:
            cache[i] = concat_descriptors(raw.load(i), emb.load(i) if emb is not None else None, weight if use_emb else 0)
        return cache[i]
    def fn(s, t):
        f = auto_matcher if kw.get("auto") else matcher
        kk = {k: v for k, v in kw.items() if k not in ("auto", "uselab")}
        if kw.get("uselab"):
            L = ctx.get_labels(); kk["lab"] = (L[s], L[t])
        return f(desc(s), desc(t), raw.grid(s), raw.grid(t), np.asarray(raw.valid[s], bool),
                       np.asarray(raw.valid[t], bool), **kk)
    return Method(name, name, _Fn(fn), range(len(ctx.cat.instances)))

VARIANTS = {
    "gate6_piece": dict(gamma=6.0, prior="piecewise", bandwidth=0.1),
    "gate4_piece_iter1": dict(gamma=4.0, prior="piecewise", bandwidth=0.1, embed="embedding_iter1"),
    "nn_embed": dict(strength=0.0, radius=0, weight=1e6),
    "lib": dict(lib=True),
    "gate4_piece": dict(gamma=4.0, prior="piecewise", bandwidth=0.1),
    "gate16_piece": dict(gamma=16.0, prior="piecewise", bandwidth=0.1),
    "gate2_piece": dict(gamma=2.0, prior="piecewise", bandwidth=0.1),
    "gate8_piece": dict(gamma=8.0, prior="piecewise", bandwidth=0.1),
    "lab_piece": dict(uselab=True, prior="piecewise", bandwidth=0.1),
    "gate8_global": dict(gamma=8.0),
    "auto_piece": dict(auto=True, prior="piecewise", bandwidth=0.1),
    "auto_piece_c1": dict(auto=True, crit=1, prior="piecewise", bandwidth=0.1),
    "pr1_r0_piece": dict(radius=0, prior_radius=1, prior="piecewise", bandwidth=0.1),
    "pr1_r0_global": dict(radius=0, prior_radius=1),
    "pr1_r0_union": dict(radius=0, prior_radius=1, prior="union"),
    "cw11": dict(cw=1/9),
    "cw25_piece": dict(cw=0.25, prior="piecewise", bandwidth=0.1),
    "cw50_piece": dict(cw=0.5, prior="piecewise", bandwidth=0.1),
    "cw50": dict(cw=0.5),
    "cw25": dict(cw=0.25),
    "geo_piece_bw1": dict(prior="piecewise", bandwidth=0.1),
    "geo_union": dict(prior="union"),
    "nn_concat": dict(strength=0.0, radius=0),
    "nn_rawonly": dict(strength=0.0, radius=0, use_emb=False),
    "geo_r0": dict(radius=0),
    "geo_r0_piece_bw1": dict(radius=0, prior="piecewise", bandwidth=0.1),
    "geo_r0_union": dict(radius=0, prior="union"),
    "geo_r0_s4": dict(radius=0, strength=4),
    "geo_r0_s2": dict(radius=0, strength=2),
    "geo_global": dict(),
    "nc_only": dict(strength=0.0),
    "geo_trunc0.25": dict(trunc=0.25),
    "geo_trunc0.15": dict(trunc=0.15),
    "geo_union3": dict(prior="union"),
    "geo_piece3": dict(prior="piecewise"),
    "geo_piece3_s16": dict(prior="piecewise", strength=16),
    "geo_piece3_bw1": dict(prior="piecewise", bandwidth=0.1),
    "geo_piece3_ms08": dict(prior="piecewise", min_support=0.08),
}

def run(run_dir, cfgs, cats, max_pairs, seed, dense, names):
    config = load_config(*cfgs)
    out = {}
    for cat in cats:
        ctx = StudyContext(run_dir, cat, config)
        STATS.clear()
        ms = [build_method("nn_raw", ctx.settings, ctx.frames)] + [method(ctx, n, **VARIANTS[n]) for n in names]
        t = time.time()
        for r in run_pair_evaluation(ctx.cat, ms, [0.1], max_pairs, seed):
            out.setdefault(r["method"], {})[cat] = r["value"]
        if dense:
            for r in run_dense_evaluation(ctx.cat, ms, [0.1], max_pairs=max_pairs, seed=seed):
                if r["metric"] == "pck@0.1":
                    out.setdefault(r["method"] + "|dense", {})[cat] = r["value"]
        print(cat, {k: np.mean(v) for k, v in STATS.items()}, f"{time.time()-t:.0f}s", file=sys.stderr, flush=True)
    for m, d in out.items():
        print(f"{m:24s}", " ".join(f"{k[:5]}={v:5.1f}" for k, v in d.items()), f"mean={np.mean(list(d.values())):5.1f}")

SPLITS = {  # split: (default run folder, config files, categories, default max pairs, dense metrics)
    "syn": ("results/default", ["config/config.yaml"], ["bird", "quadruped", "car", "aircraft"], 20, True),
    "dev": ("results/pfwillow", ["config/config.yaml", "config/pfwillow.yaml"], ["car", "motorbike"], None, False),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="matcher_study.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split", choices=sorted(SPLITS), help="syn: the synthetic default; dev: the PF-WILLOW dev split")
    ap.add_argument("variants", nargs="?", default=None, help="comma list of variant names (default: all)")
    ap.add_argument("max_pairs", nargs="?", type=positive_int, default=None,
                    help="syn: evaluation pairs per category (default 20)")
    ap.add_argument("pair_seed", nargs="?", type=nonnegative_int, default=0, help="syn: seed of the pair draw")
    ap.add_argument("--run", default=None, help="the run folder (default: $RUN, else results/default or results/pfwillow)")
    ap.add_argument("--configfile", nargs="+", default=None, help="the run's config files (default: the split's)")
    ap.add_argument("--categories", nargs="+", default=None, help="default: the split's categories")
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        ap.print_usage(sys.stderr)
        print("matcher_study.py: needs a split (syn or dev) and a finished run of it: the feature stores and "
              "the improved manifold under results/default (syn) or results/pfwillow (dev); see --help",
              file=sys.stderr)
        return 2
    a = ap.parse_args(argv)
    run_dir, cfgs, cats, max_pairs, dense = SPLITS[a.split]
    run_dir = a.run or os.environ.get("RUN") or run_dir
    cfgs = a.configfile or cfgs
    cats = a.categories or cats
    max_pairs = a.max_pairs if a.max_pairs is not None else max_pairs
    names = a.variants.split(",") if a.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (valid: {', '.join(VARIANTS)})")
    require_paths(ap, cfgs, "the run's config files")
    require_paths(ap, [p for c in cats for p in (f"{run_dir}/features/{c}.zarr", f"{run_dir}/manifold/improved/{c}")],
                  f"a finished {a.split} run (features and the improved manifold of each category)")
    _import_heavy()
    run(run_dir, cfgs, cats, max_pairs, a.pair_seed, dense, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
