"""The ablation study (issue 8): every stage of the paper's variant and of the improved variant,
measured with the same pair-wise PCK (and, where dense ground truth exists, dense metrics).

Rows are (variant, stage, method):

* ``raw``       nearest neighbour on raw backbone features, once per layer set
                (``evaluate.ablation_layer_sets``; the configured layers are the stored features);
* ``paper`` / ``improved`` — the two manifold variants, each with
  ``nn_embed_iter1`` (embedding after the first iteration), ``nn_embed`` (last iteration),
  ``nn_embed_labels`` (matching restricted to the same part label), ``pseudo_gt`` (the
  variant's pseudo-ground-truth matcher, the object that writes its flow store; cells it
  leaves undefined count as misses), ``arch_paper`` / ``arch_correlation`` (the Siamese network
  of each architecture, ``siamese.architecture``, trained on that variant's teacher; the
  configured one is the run's ``siamese/<variant>/model.pt``, the other is trained for the
  ablation under ``siamese/<variant>/architecture_<name>/``), each also ``_finetuned``, and
  ``ours_network_geometric`` (the configured network's read-out with the geometric
  matcher's location prior);
* the improved variant adds ``geo_raw`` (the geometric matcher on raw features alone: what the
  location prior gives without the manifold) and ``geo_concat`` (the geometric matcher on raw
  features + embedding: the improved pseudo ground truth without its validity mask).

Every stage is a named method of :mod:`sopcorr.matchers.methods`; the job's rule declares the
stores and checkpoints they read.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..geometry import FeatureGrid

log = logging.getLogger(__name__)

#: both Siamese architectures, trained on the same teacher, before and after fine-tuning
NETWORK_STAGES = ["arch_paper", "arch_paper_finetuned", "arch_correlation", "arch_correlation_finetuned",
                  "ours_network_geometric"]
PAPER_STAGES = ["nn_embed_iter1", "nn_embed", "nn_embed_labels", "pseudo_gt", *NETWORK_STAGES]
IMPROVED_STAGES = ["nn_embed_iter1", "nn_embed", "nn_embed_labels", "geo_raw", "geo_concat", "pseudo_gt",
                   *NETWORK_STAGES]


def variant_stages(variant: str, rounds: int = 1) -> list[str]:
    """The ablation's stages (method names) of ``variant`` ('paper' | 'improved'); with
    ``rounds`` > 1 rounds of self-training (``siamese.rounds``), also every round's network
    (``ours_network_round<r>``: the configured network of the other stages is the last round's)."""
    extra = [f"ours_network_round{r}" for r in range(1, rounds + 1)] if rounds > 1 else []
    return list(PAPER_STAGES if variant == "paper" else IMPROVED_STAGES) + extra


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


@dataclass(frozen=True)
class BackboneParams:
    """The configured backbone (config ``backbone``: name, input_size, layers, weights, relu,
    device) for the extra raw-feature layer sets."""

    name: str
    input_size: int
    layers: tuple | None = None
    weights: str | None = None
    relu: bool = True
    device: str = "auto"

    def label(self, layers=None) -> str:
        """The stage name of nearest neighbour on ``layers`` (default: the configured ones)."""
        lays = list(layers) if layers is not None else list(self.layers or ["default"])
        return "nn_raw[" + "+".join(lays) + "]"


def extract_layer_set(cat, backbone: BackboneParams, layers: list[str]) -> MemoryStore:
    """Raw features of one category (an EvalCategory) for another layer set of the backbone: the
    feature stage's extraction (:func:`sopcorr.features.extract.dense_batches`, one image per
    batch), kept in memory as float32."""
    import torch

    from ..device import resolve_device
    from ..features.backbones import build_backbone
    from ..features.extract import dense_batches

    net = build_backbone(backbone.name, backbone.input_size, layers=list(layers), weights=backbone.weights,
                         device=str(resolve_device(backbone.device)))
    feats, valid, grids = [], [], []
    with torch.inference_mode():
        for _, maps, ok, lbs in dense_batches(net, cat.image, len(cat.instances), relu=backbone.relu, batch_size=1):
            feats.append(maps[0].cpu().numpy().astype(np.float32))
            valid.append(ok[0])
            grids.append(FeatureGrid(lbs[0], net.out_stride))
    return MemoryStore(np.stack(feats), np.stack(valid), grids, [inst.id for inst in cat.instances])


@dataclass
class AblationVariant:
    """One variant's inputs: frames ({'raw' | 'embedding' | 'embedding_iter1': FrameSource}),
    checkpoints ({'model' | 'finetuned': path}) and its MatcherSettings."""

    frames: dict
    checkpoints: dict
    settings: object


def run_ablation(cat, raw_frames, raw_settings, variants: dict, backbone: BackboneParams,
                 layer_sets: list[list[str]] = (), alphas=(0.05, 0.1), max_pairs: int | None = None,
                 seed: int = 0, dense_stride: int = 4, dense: bool = True, progress=False,
                 rounds: int = 1) -> list[dict]:
    """Records (variant, stage, method, metric, category, value) of every stage for one
    category (an :class:`~sopcorr.evaluate.category.EvalCategory`). raw_frames: the raw
    features' FrameSource; raw_settings: MatcherSettings of nearest neighbour; variants:
    {'paper' | 'improved': AblationVariant}. metric: 'pck@<alpha>' (pair-wise, %) and, where the
    dataset has dense ground truth, 'dense_pck@<alpha>' (%), 'dense_epe_px'. Progress (pairs
    matched over every stage) goes to the log as one count (:func:`sopcorr.progress.counting`);
    rounds: ``siamese.rounds`` (every round's network is a stage when > 1)."""
    from ..progress import counting
    from ..matchers.base import FrameSource
    from ..matchers.methods import build_method, build_methods
    from .dense import has_dense_ground_truth, run_dense_evaluation
    from .pairs import run_pair_evaluation

    rows = [("raw", backbone.label(), build_method("nn_raw", raw_settings, {"raw": raw_frames}))]
    for layers in layer_sets or []:
        store = extract_layer_set(cat, backbone, list(layers))
        frames = FrameSource(cat.dataset, store, category=cat.category)
        rows.append(("raw", backbone.label(layers), build_method("nn_raw", raw_settings, {"raw": frames})))
    for v, inp in variants.items():
        stages = variant_stages(v, rounds)
        for stage, m in zip(stages, build_methods(stages, inp.settings, inp.frames, inp.checkpoints)):
            rows.append((v, stage, m))
    has_dense = dense and has_dense_ground_truth(cat)
    out = []
    n_pairs = len(cat.pairs(max_pairs, seed))
    with counting(progress, total=len(rows) * n_pairs * (2 if has_dense else 1),
                  desc=f"ablation {cat.category}", unit="pair", logger=log) as bar:
        for v, stage, m in rows:
            for r in run_pair_evaluation(cat, [m], alphas, max_pairs, seed, progress=bar):
                out.append(dict(variant=v, stage=stage, metric=f"pck@{r['alpha']:g}", category=cat.category,
                                value=r["value"]))
            if has_dense:
                for r in run_dense_evaluation(cat, [m], alphas, dense_stride, max_pairs=max_pairs, seed=seed,
                                              progress=bar):
                    if r["metric"] == "coverage":
                        continue
                    metric = "dense_epe_px" if r["metric"] == "epe_px" else "dense_" + r["metric"]
                    out.append(dict(variant=v, stage=stage, metric=metric, category=cat.category,
                                    value=r["value"]))
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
