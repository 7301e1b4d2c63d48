"""The ablation study (issue 8): every stage of the paper's variant and of the improved variant,
measured with the same pair-wise PCK (and, where dense ground truth exists, dense metrics).

Rows are (variant, stage, method):

* ``raw``       nearest neighbour on raw backbone features, once per layer set
                (``evaluate.ablation_layer_sets``; the configured layers are the stored features);
* ``paper`` / ``improved`` — the two manifold variants, each with
  ``nn_embed_iter0`` (embedding of the first iteration), ``nn_embed`` (last iteration),
  ``nn_embed_labels`` (matching restricted to the same part label), ``pseudo_gt`` (the pseudo
  ground truth the Siamese network is trained on; cells it leaves undefined count as misses),
  ``ours_siamese`` and ``ours_finetuned`` (the Siamese network before/after fine-tuning);
* the improved variant adds ``geo_raw`` (the geometric matcher on raw features alone: what the
  location prior gives without the manifold) and ``geo_concat`` (the geometric matcher on raw
  features + embedding: the improved pseudo ground truth without its validity mask).

Stages whose inputs are missing are skipped with a logged note.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry import FeatureGrid
from .methods import CategoryContext, Method, MethodUnavailable, build_method

log = logging.getLogger(__name__)

PAPER_STAGES = ["nn_embed_iter0", "nn_embed", "nn_embed_labels", "pseudo_gt", "ours_siamese", "ours_finetuned"]
IMPROVED_STAGES = ["nn_embed_iter0", "nn_embed", "nn_embed_labels", "geo_raw", "geo_concat", "pseudo_gt",
                   "ours_siamese", "ours_finetuned"]


@dataclass
class MemoryStore:
    """A FeatureStore stand-in held in memory: features (N, H, W, C), valid (N, H, W), grids."""

    features: np.ndarray
    valid: np.ndarray
    grids: list
    ids: list

    def load(self, i: int) -> np.ndarray:
        return self.features[i]

    def grid(self, i: int) -> FeatureGrid:
        return self.grids[i]

    @property
    def global_desc(self) -> np.ndarray:
        v = self.valid[..., None].astype(np.float32)
        g = (self.features * v).sum((1, 2)) / np.maximum(v.sum((1, 2)), 1)
        return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def extract_layer_set(ctx: CategoryContext, backbone_cfg: dict, layers: list[str]) -> MemoryStore:
    """Raw features of one category for another layer set of the configured backbone."""
    import torch

    from ..features.backbones import build_backbone, resolve_device
    from ..features.extract import dense_maps, preprocess

    dev = resolve_device(backbone_cfg.get("device", "auto"))
    net = build_backbone(backbone_cfg["name"], backbone_cfg["input_size"], layers=layers,
                         weights=backbone_cfg.get("weights"), device=str(dev))
    feats, valid, grids = [], [], []
    with torch.inference_mode():
        for i in range(len(ctx.instances)):
            x, lb = preprocess(ctx.image(i), backbone_cfg["input_size"], net.spec.mean, net.spec.std)
            m = dense_maps(net, x[None].to(dev), relu=backbone_cfg.get("relu", True))[0].cpu().numpy()
            g = FeatureGrid(lb, net.out_stride)
            feats.append(m.astype(np.float32))
            valid.append(g.valid_mask())
            grids.append(g)
    return MemoryStore(np.stack(feats), np.stack(valid), grids, [inst.id for inst in ctx.instances])


def variant_context(category: str, run_dir: Path, config: dict, variant: str) -> CategoryContext:
    """A CategoryContext reading the manifold and Siamese outputs of ``variant``
    (manifold/<variant>/<category>/, siamese/<variant>/)."""
    from ..features.store import FeatureStore

    run_dir = Path(run_dir)
    ctx = CategoryContext(category, run_dir, config)
    ctx._cache["variant"] = variant  # lazily found paths are this variant's, never the config's
    mdir = run_dir / "manifold" / variant / category
    for kind, name in (("embed", "embedded.zarr"), ("embed_iter0", "embedded_iter0.zarr")):
        if (mdir / name).is_dir():
            ctx.stores[kind] = FeatureStore.open(mdir / name)
    if (mdir / "labels.zarr").exists():
        import zarr

        z = zarr.open(str(mdir / "labels.zarr"), mode="r")
        arr = z["labels"] if hasattr(z, "keys") and "labels" in list(z.keys()) else z
        ctx.labels = np.asarray(arr[:])
    sdir = run_dir / "siamese" / variant
    for kind, fname in (("siamese", "model.pt"), ("finetuned", "finetuned.pt")):
        if (sdir / fname).is_file():
            from ..siamese.predict import SiameseMatcher

            ctx.matchers[kind] = SiameseMatcher(sdir / fname, device=config.get("siamese", {}).get("device", "auto"))
    return ctx


def _geometric_method(ctx: CategoryContext, name: str, use_embedding: bool, fb_valid: bool) -> Method:
    from ..flow.geometric import (concat_descriptors, forward_backward_valid,
                                  geometric_correspondence, geometric_params)

    gcfg = ctx.config["flow"]["geometric"]
    kw = geometric_params(gcfg)
    weight = float(gcfg["embedding_weight"]) if use_embedding else 0.0
    raw = ctx.store("raw")
    emb = ctx.store("embed") if use_embedding else None
    seed = int(ctx.config.get("seed", 0))
    cache: dict[int, np.ndarray] = {}

    def desc(i):
        if i not in cache:
            cache[i] = concat_descriptors(raw.load(i), emb.load(i) if emb is not None else None, weight)
        return cache[i]

    def fn(s, t):
        vs, vt = np.asarray(raw.valid[s], bool), np.asarray(raw.valid[t], bool)
        fwd = geometric_correspondence(desc(s), desc(t), raw.grid(s), raw.grid(t), vs, vt, seed=seed, **kw)
        if fb_valid:
            bwd = geometric_correspondence(desc(t), desc(s), raw.grid(t), raw.grid(s), vt, vs, seed=seed, **kw)
            fwd.valid = forward_backward_valid(fwd, bwd, raw.grid(t), float(gcfg["fb_tolerance"]))
        return fwd

    return Method(name, name, fn)


def variant_methods(ctx: CategoryContext, variant: str) -> list[tuple[str, Method]]:
    """(stage, method) pairs of one variant that can run in ``ctx``."""
    out = []
    stages = PAPER_STAGES if variant == "paper" else IMPROVED_STAGES
    for stage in stages:
        try:
            if variant == "improved" and stage == "geo_raw":
                m = _geometric_method(ctx, stage, use_embedding=False, fb_valid=False)
            elif variant == "improved" and stage == "geo_concat":
                m = _geometric_method(ctx, stage, use_embedding=True, fb_valid=False)
            elif variant == "improved" and stage == "pseudo_gt":
                m = _geometric_method(ctx, stage, use_embedding=True, fb_valid=True)
            else:
                m = build_method(stage, ctx)
        except MethodUnavailable as exc:
            log.warning("ablation: skipping %s/%s for %s: %s", variant, stage, ctx.category, exc)
            continue
        out.append((stage, m))
    return out


def run_ablation(category: str, run_dir: Path, config: dict, variants=("paper", "improved"),
                 layer_sets: list[list[str]] | None = None, dense: bool = True) -> list[dict]:
    """Records (variant, stage, method, metric, category, value) of every stage for one
    category. metric: 'pck@<alpha>' (pair-wise, %) and, where the dataset has dense ground truth,
    'dense_pck@<alpha>' (%), 'dense_epe_px'."""
    from .dense import run_dense_evaluation
    from .pairs import run_pair_evaluation

    ev = config["evaluate"]
    alphas = list(ev["pair_alphas"])
    rows: list[tuple[str, str, Method, CategoryContext]] = []
    base = variant_context(category, run_dir, config, variants[0])
    rows.append(("raw", "nn_raw[" + "+".join(config["backbone"].get("layers") or ["default"]) + "]",
                 build_method("nn_raw", base), base))
    for layers in layer_sets or []:
        store = extract_layer_set(base, config["backbone"], list(layers))
        ctx = CategoryContext(category, Path(run_dir), config, stores={"raw": store})
        ctx.dataset = base.get_dataset()
        rows.append(("raw", "nn_raw[" + "+".join(layers) + "]", build_method("nn_raw", ctx), ctx))
    for v in variants:
        ctx = base if v == variants[0] else variant_context(category, run_dir, config, v)
        for stage, m in variant_methods(ctx, v):
            rows.append((v, stage, m, ctx))
    has_dense = all(inst.canonical and inst.parts for inst in base.instances)
    out = []
    for v, stage, m, ctx in rows:
        for r in run_pair_evaluation(ctx, [m], alphas, ev.get("max_eval_pairs"), config.get("seed", 0)):
            out.append(dict(variant=v, stage=stage, metric=f"pck@{r['alpha']:g}", category=category,
                            value=r["value"]))
        if dense and has_dense:
            for r in run_dense_evaluation(ctx, [m], alphas, max_pairs=ev.get("max_eval_pairs"),
                                          seed=config.get("seed", 0)):
                if r["metric"] == "coverage":
                    continue
                metric = "dense_epe_px" if r["metric"] == "epe_px" else "dense_" + r["metric"]
                out.append(dict(variant=v, stage=stage, metric=metric, category=category, value=r["value"]))
    for r in out:
        r["method"] = f"{r['variant']}/{r['stage']}"
    return out


def ablation_table(records, categories: list[str]):
    """Long records -> one row per (variant, stage, metric): columns variant, stage, metric,
    *categories, mean (mean over categories). Row order: raw, paper, improved; stages in the
    order they ran."""
    import pandas as pd

    df = pd.DataFrame(records)
    rows = []
    if len(df) == 0:
        return pd.DataFrame(columns=["variant", "stage", "metric", *categories, "mean"])
    for (v, st, me), sub in df.groupby(["variant", "stage", "metric"], sort=False):
        vals = {c: float(sub.loc[sub["category"] == c, "value"].iloc[0]) if (sub["category"] == c).any()
                else float("nan") for c in categories}
        arr = np.array(list(vals.values()), float)
        rows.append({"variant": v, "stage": st, "metric": me, **vals,
                     "mean": float(arr.mean()) if np.isfinite(arr).all() else float("nan")})
    out = pd.DataFrame(rows)
    order = {"raw": 0, "paper": 1, "improved": 2}
    out["_v"] = out["variant"].map(order).fillna(3)
    out["_i"] = range(len(out))
    out = out.sort_values(["_v", "metric", "_i"], kind="stable").drop(columns=["_v", "_i"])
    return out.reset_index(drop=True)


def ablation_figure(table, path) -> None:
    """Bars of pair-wise PCK@0.1 (mean over categories) per stage, coloured by variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import save_figure

    sub = table[table["metric"] == "pck@0.1"]
    colours = {"raw": "#777777", "paper": "#d95f02", "improved": "#1b9e77"}
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(sub) + 2), 4))
    labels = [f"{v}/{s}" for v, s in zip(sub["variant"], sub["stage"])]
    ax.bar(range(len(sub)), sub["mean"], color=[colours.get(v, "#333") for v in sub["variant"]])
    ax.set_xticks(range(len(sub)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("pair-wise PCK@0.1 (%)")
    ax.set_title("Ablation: every stage of the paper's and the improved variant")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
