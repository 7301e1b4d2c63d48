"""Backbone study (issue 13 item 4): EfficientNet-Lite0/1/2 with the same stage layers.

Every backbone is run with the *same* settings, those of the default config (layers
``backbone.layers`` = ``[stage5, stage6]``, the same stage/stride rule on every Lite; ``relu``,
``batch_size`` and ``input_size`` as configured: 256 px on the synthetic default, 448 px on the
dev split with ``config/pfwillow.yaml``). Nothing is fitted per backbone. For each backbone and
dataset it reports

* pair-wise PCK@0.1 (``sopcorr.evaluate.pairs.pair_counts``: keypoints visible in both images,
  alpha x max(target box side)) of nearest neighbour on the raw features and of the geometric
  matcher (``sopcorr.flow.geometric.geometric_correspondence``, the config's ``flow.geometric``
  settings = the schema's defaults, raw features only: no embedding), per category, as the mean
  of categories (the pipeline's tables) and per pair (each pair's PCK averaged over all pairs);
* the geometric matcher's time per pair (it scales with the channel count);
* extraction time per image (wall and process CPU, ``extract_images``: decode, letterbox,
  forward, maps, zarr writes) and the peak resident memory of a fresh process extracting one
  dataset category by category on ``--threads`` cores, beside the request
  ``job_memory_mb`` makes for the same job.

Quick (default, a couple of minutes on an idle 2-core machine): 20 evaluation pairs per
synthetic category (the default run's ``evaluate.max_eval_pairs``, same draw) and 30 per dev
category. ``--full``: every pair of both datasets::

    OMP_NUM_THREADS=2 python benchmarks/backbone_study.py
    OMP_NUM_THREADS=2 python benchmarks/backbone_study.py --full --out results/backbone_study.json
    OMP_NUM_THREADS=2 python benchmarks/backbone_study.py --full --skip-synthetic --backbones efficientnet_lite0 --config size.yaml

``--config`` merges overlays after each dataset's own config files (above: ``size.yaml`` holding
``backbone: {input_size: 576}`` runs the dev split at 576 px instead of 448).

The synthetic default is read from ``results/default/dataset/dataset.json`` (made by
``snakemake --cores 2 results/default/dataset/dataset.json``), the dev split from
``../shared/data/pfwillow_dev``; ``--synthetic`` / ``--dev`` point elsewhere, ``--skip-dev`` /
``--skip-synthetic`` leave one out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _cli import require_paths

ROOT = Path(__file__).resolve().parents[1]
LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


# ------------------------------------------------------------------------------ extraction
def conv_gmacs(net, size: int) -> float:
    """Multiply-accumulates (10^9) of the truncated network's convolutions for one image of
    side ``size`` (hooks on every Conv2d: output elements x in-channels / groups x kernel area):
    a load-independent measure of the forward's cost."""
    import torch

    macs = []

    def hook(m, _inp, out):
        macs.append(out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1])

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sum(macs) / 1e9


def _extract_worker(dataset: str, backbone_cfg: dict, out_dir: str, threads: int) -> dict:
    """In a fresh process: extract every category of ``dataset`` into ``out_dir/<cat>.zarr``;
    returns timings and this process's peak RSS."""
    import torch

    torch.set_num_threads(threads)
    from sopcorr.data.generic import load_dataset, read_image
    from sopcorr.features.backbones import build_backbone
    from sopcorr.features.extract import extract_images

    ds = load_dataset(dataset, check_images=False)
    net = build_backbone(backbone_cfg["name"], backbone_cfg["input_size"], layers=backbone_cfg["layers"],
                         weights=backbone_cfg.get("weights"), device="cpu")
    n, wall, cpu = 0, 0.0, 0.0
    for cat in sorted(ds.categories):
        insts = ds.of_category(cat).instances
        images = [read_image(ds.path(i.image)) for i in insts]  # decoding is not timed
        t0, c0 = time.perf_counter(), time.process_time()
        extract_images(net, lambda i: images[i], [i.id for i in insts], Path(out_dir) / f"{cat}.zarr",
                       relu=bool(backbone_cfg["relu"]), batch_size=int(backbone_cfg["batch_size"]),
                       progress=False)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        n += len(insts)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {"images": n, "gmacs": conv_gmacs(net, net.input_size), "wall_s_per_image": wall / n, "cpu_s_per_image": cpu / n, "peak_rss_mb": peak,
            "grid": net.out_size, "channels": net.out_channels}


def extract(dataset: Path, backbone_cfg: dict, out_dir: Path, threads: int) -> dict:
    """Run :func:`_extract_worker` in a fresh Python process (so its peak RSS is the job's)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT / "src"))
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import backbone_study as b; "
            f"print('RESULT', json.dumps(b._extract_worker({str(dataset)!r}, {backbone_cfg!r}, "
            f"{str(out_dir)!r}, {threads})))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"extraction with {backbone_cfg['name']} failed:\n{proc.stderr[-2000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


# ------------------------------------------------------------------------------ matching
def choose_pairs(ds, max_pairs: int | None, seed: int) -> dict[str, list[tuple[int, int]]]:
    """Per category: the dataset's ordered pairs as (src, tgt) indices into the category's
    instances sorted by id, all or ``max_pairs`` drawn with ``seed`` as the evaluation does
    (``sopcorr.evaluate.pairs.eval_pairs``)."""
    out = {}
    for cat in sorted(ds.categories):
        sub = ds.of_category(cat)
        idx = {inst.id: i for i, inst in enumerate(sub.instances)}
        pairs = [(idx[a], idx[b]) for a, b in sub.pairs if a in idx and b in idx]
        if max_pairs is not None and len(pairs) > max_pairs:
            keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
            pairs = [pairs[j] for j in keep]
        out[cat] = pairs
    return out


def _bbox(ds, i: int) -> tuple:
    """The instance's box, else the whole image (as the evaluation's CategoryContext.bbox)."""
    inst = ds.instances[i]
    if inst.bbox is not None:
        return inst.bbox
    from sopcorr.data.generic import image_size

    h, w = image_size(ds.path(inst.image))
    return (0.0, 0.0, float(w - 1), float(h - 1))


def evaluate(ds, stores_dir: Path, pairs: dict, geometric_kw: dict, seed: int, alpha: float = 0.1) -> dict:
    """PCK@alpha of nn_raw and geometric_raw: {method: {category: [correct, total, per-pair PCKs]}}
    and the geometric matcher's seconds per pair."""
    from sopcorr.evaluate.pairs import pair_counts
    from sopcorr.features.store import FeatureStore
    from sopcorr.flow.geometric import geometric_correspondence
    from sopcorr.flow.nn import nearest_neighbour

    res = {"nn_raw": {}, "geometric_raw": {}}
    t_geo, n_geo = 0.0, 0
    for cat, cat_pairs in pairs.items():
        sub = ds.of_category(cat)
        names = list(sub.categories[cat].keypoints)
        st = FeatureStore.open(stores_dir / f"{cat}.zarr")
        assert st.ids == [i.id for i in sub.instances]
        feats = {i: st.load(i) for i in sorted({k for p in cat_pairs for k in p})}
        valid = np.asarray(st.valid[:], bool)
        for m in res:
            res[m][cat] = [0, 0, []]
        for s, t in cat_pairs:
            ks, kt = sub.instances[s].keypoint_array(names), sub.instances[t].keypoint_array(names)
            bbox = _bbox(sub, t)
            corr = {"nn_raw": nearest_neighbour(feats[s], feats[t], st.grid(s), st.grid(t), valid[s], valid[t])}
            t0 = time.perf_counter()
            corr["geometric_raw"] = geometric_correspondence(feats[s], feats[t], st.grid(s), st.grid(t), valid[s],
                                                             valid[t], seed=seed, **geometric_kw)
            t_geo += time.perf_counter() - t0
            n_geo += 1
            for m, c in corr.items():
                ok, n = pair_counts(c, ks, kt, bbox, [alpha])[alpha]
                rec = res[m][cat]
                rec[0] += ok
                rec[1] += n
                if n:
                    rec[2].append(100.0 * ok / n)
    return {"pck": res, "geometric_s_per_pair": t_geo / max(n_geo, 1)}


def summarise(pck: dict) -> dict:
    """{method: {'categories': {cat: %}, 'mean': mean of categories, 'per_pair': mean of the
    pairs' PCKs, 'keypoints': total}}."""
    out = {}
    for m, cats in pck.items():
        per_cat = {c: 100.0 * v[0] / max(v[1], 1) for c, v in cats.items()}
        pairs = [p for v in cats.values() for p in v[2]]
        out[m] = {"categories": per_cat, "mean": float(np.mean(list(per_cat.values()))),
                  "per_pair": float(np.mean(pairs)) if pairs else float("nan"),
                  "keypoints": int(sum(v[1] for v in cats.values())), "pairs": len(pairs), "pair_pck": pairs}
    return out


def paired_difference(a: list[float], b: list[float], seed: int = 0, n_boot: int = 2000) -> tuple[float, float, float]:
    """Mean of b - a over the same pairs and its 95 % bootstrap interval (pairs resampled with
    replacement, seeded). Pairs share images, so the interval is, if anything, too narrow."""
    d = np.asarray(b, float) - np.asarray(a, float)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def print_differences(rows: list[dict]) -> None:
    """Per dataset: each backbone against the first, per-pair PCK@0.1 difference with its 95 % interval."""
    print("\n| data | method | backbone vs first | per_pair difference | 95 % interval (bootstrap over pairs) |")
    print("|---|---|---|--:|---|")
    for label in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == label]
        for m in ("nn_raw", "geometric_raw"):
            for r in group[1:]:
                d, lo, hi = paired_difference(group[0]["results"][m]["pair_pck"], r["results"][m]["pair_pck"])
                print(f"| {label} | {m} | {r['backbone']} - {group[0]['backbone']} | {d:+.1f} | [{lo:+.1f}, {hi:+.1f}] |")


# ------------------------------------------------------------------------------ driver
def study(label: str, dataset: Path, config_files: list[Path], backbones: list[str], max_pairs: int | None,
          threads: int, work: Path) -> list[dict]:
    from sopcorr.config import load_config
    from sopcorr.data.generic import load_dataset
    from sopcorr.features.memory import job_memory_mb
    from sopcorr.matchers.geometric import GeometricParams

    cfg = load_config(*config_files)
    ds = load_dataset(dataset, check_images=False)
    pairs = choose_pairs(ds, max_pairs, int(cfg["seed"]))
    gp = GeometricParams.from_config({k: v for k, v in cfg["flow"]["geometric"].items() if k != "fb_tolerance"})
    gkw = {k: getattr(gp, k) for k in ("strength", "consensus_radius", "consensus_gate", "prior", "max_models",
                                       "min_support", "bandwidth", "ransac_threshold", "ransac_iterations")}
    rows = []
    for name in backbones:
        bcfg = dict(cfg["backbone"], name=name)
        out = work / label / name
        timing = extract(dataset, bcfg, out, threads)
        ev = evaluate(ds, out, pairs, gkw, int(cfg["seed"]))
        rows.append({"dataset": label, "backbone": name, "layers": bcfg["layers"],
                     "input_size": bcfg["input_size"], "relu": bcfg["relu"], **timing,
                     "geometric_s_per_pair": ev["geometric_s_per_pair"],
                     "memory_request_mb": job_memory_mb(name, bcfg["input_size"], bcfg["batch_size"], bcfg["layers"]),
                     "results": summarise(ev["pck"])})
        print_row(rows[-1])
    return rows


def print_row(r: dict) -> None:
    res = r["results"]
    cats = list(res["nn_raw"]["categories"])
    print(f"\n{r['dataset']} | {r['backbone']} {'+'.join(r['layers'])} @ {r['input_size']} px "
          f"-> {r['grid']}x{r['grid']}x{r['channels']}, relu {r['relu']}, {r['gmacs']:.2f} GMAC/img; "
          f"{res['nn_raw']['pairs']} pairs, {res['nn_raw']['keypoints']} keypoints", flush=True)
    for m in ("nn_raw", "geometric_raw"):
        per = " ".join(f"{c} {v:.1f}" for c, v in res[m]["categories"].items())
        print(f"  {m:14s} mean {res[m]['mean']:.1f}  per_pair {res[m]['per_pair']:.1f}  ({per})", flush=True)
    print(f"  extraction {r['wall_s_per_image'] * 1e3:.0f} ms/img wall, {r['cpu_s_per_image'] * 1e3:.0f} ms/img CPU "
          f"({r['images']} images); peak RSS {r['peak_rss_mb']:.0f} MB (request {r['memory_request_mb']} MB); "
          f"geometric {r['geometric_s_per_pair'] * 1e3:.0f} ms/pair; cats {cats}", flush=True)


def print_table(rows: list[dict]) -> None:
    print("\n| data | backbone | grid x C | pairs (kps) | nn_raw mean | nn_raw per_pair | geometric mean "
          "| geometric per_pair | per category nn / geo | GMAC/img | extraction ms/img wall (CPU) "
          "| peak RSS MB (request) | geometric ms/pair |")
    print("|---|---|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|")
    for r in rows:
        res = r["results"]
        per = "; ".join(f"{c} {res['nn_raw']['categories'][c]:.1f} / {res['geometric_raw']['categories'][c]:.1f}"
                        for c in res["nn_raw"]["categories"])
        print(f"| {r['dataset']} | {r['backbone']} | {r['grid']}x{r['grid']}x{r['channels']} "
              f"| {res['nn_raw']['pairs']} ({res['nn_raw']['keypoints']}) "
              f"| {res['nn_raw']['mean']:.1f} | {res['nn_raw']['per_pair']:.1f} "
              f"| {res['geometric_raw']['mean']:.1f} | {res['geometric_raw']['per_pair']:.1f} | {per} "
              f"| {r['gmacs']:.2f} | {r['wall_s_per_image'] * 1e3:.0f} ({r['cpu_s_per_image'] * 1e3:.0f}) "
              f"| {r['peak_rss_mb']:.0f} ({r['memory_request_mb']}) | {r['geometric_s_per_pair'] * 1e3:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="every pair of both datasets (default: a quick subset)")
    ap.add_argument("--backbones", nargs="+", default=LITES)
    ap.add_argument("--synthetic", type=Path, default=ROOT / "results" / "default" / "dataset" / "dataset.json")
    ap.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "data" / "pfwillow_dev")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-dev", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the extraction process")
    ap.add_argument("--out", type=Path, default=None, help="also write the records as JSON")
    ap.add_argument("--config", type=Path, nargs="+", default=[], metavar="FILE",
                    help="config overlays merged after each dataset's own files (e.g. another backbone.input_size)")
    args = ap.parse_args(argv)
    require_paths(ap, args.config, "a config file")
    sys.path.insert(0, str(ROOT / "src"))
    import torch

    torch.set_num_threads(args.threads)
    cfg_default, cfg_dev = ROOT / "config" / "config.yaml", ROOT / "config" / "pfwillow.yaml"
    jobs = []
    if not args.skip_synthetic:
        if not args.synthetic.is_file():
            raise SystemExit(f"{args.synthetic}: no synthetic dataset; make it with "
                             f"`snakemake --cores 2 results/default/dataset/dataset.json` or pass --synthetic")
        jobs.append(("synthetic", args.synthetic, [cfg_default, *args.config], None if args.full else 20))
    if not args.skip_dev:
        if not args.dev.exists():
            raise SystemExit(f"{args.dev}: no dev split; pass --dev or --skip-dev")
        jobs.append(("dev", args.dev, [cfg_default, cfg_dev, *args.config], None if args.full else 30))
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="backbone_study_") as work:
        for label, path, cfgs, max_pairs in jobs:
            rows += study(label, path, cfgs, args.backbones, max_pairs, args.threads, Path(work))
    print_table(rows)
    print_differences(rows)
    print(f"\n({'full' if args.full else 'quick'} study, {time.perf_counter() - t0:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f})")
    if args.out:
        from sopcorr.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
