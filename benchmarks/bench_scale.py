"""How the default run's cost grows with images per category (issue 25, item 3).

Runs the whole pipeline (`all`, the default config) on ONE synthetic category at several sizes N
(images per category), each in a throw-away copy of the workflow with the repository's code:

* ``dataset.synthetic.images_per_category: N`` (category ``--category``, default bird);
* ``flow.pairs_per_category: 6 N`` (the teacher's training pairs grow with the images);
* ``evaluate.max_eval_pairs: N / 2`` (and the dataset's pairs per category at least N, so that
  N / 2 of them exist);
* everything else as in ``config/config.yaml`` (the viewer keeps its 12 images: a fixed cost).

For each size it prints the wall clock of ``snakemake --cores C`` and, per stage (the rules file
that defines the rule, as ``bench_demo.sh`` groups them), the summed job seconds and the peak RSS
of any job; then, per stage and end to end, the exponent k of job seconds ~ N^k fitted on the
log-log points (least squares), and the fixed cost a of the linear fit s = a + b N (its
intercept, clipped at 0). A stage whose exponent is below 0.5 is said to be fixed-cost
dominated at these sizes.

    python benchmarks/bench_scale.py                 # N = 25, 50: about 3-4 min on an idle 2-core machine
    python benchmarks/bench_scale.py --full          # N = 25, 50, 100, 200 (tens of minutes)
    python benchmarks/bench_scale.py --sizes 25 50 100 --cores 2 --keep

Exempt from the benchmarks' two-minute rule like ``bench_demo.sh`` (it runs the pipeline twice).
"""
from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _cli import positive_int

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (25, 50)
FULL_SIZES = (25, 50, 100, 200)
FIXED_EXPONENT = 0.5


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="about 3-4 min with no flags on an idle 2-core machine")
    ap.add_argument("--sizes", type=positive_int, nargs="+", default=None, metavar="N",
                    help=f"images per category (default {' '.join(map(str, DEFAULT_SIZES))})")
    ap.add_argument("--full", action="store_true", help=f"sizes {' '.join(map(str, FULL_SIZES))}")
    ap.add_argument("--category", default="bird", choices=["bird", "quadruped", "car", "aircraft"])
    ap.add_argument("--cores", type=positive_int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work folders (printed)")
    args = ap.parse_args(argv)
    if args.full and args.sizes:
        ap.error("--full and --sizes exclude each other")
    sizes = sorted(set(FULL_SIZES if args.full else (args.sizes or DEFAULT_SIZES)))
    if any(n < 10 for n in sizes):
        ap.error("--sizes: at least 10 images per category (the run splits them into train and test)")
    if len(sizes) < 2:
        ap.error("--sizes: at least two sizes (an exponent needs two points)")
    args.sizes = sizes
    return args


def overlay(n: int, category: str) -> str:
    """The config overlay of one size (YAML text)."""
    return (f"run: scale_{n}\n"
            f"dataset:\n  synthetic:\n    categories: [{category}]\n    images_per_category: {n}\n"
            f"    pairs_per_category: {max(60, n)}\n"
            f"flow:\n  pairs_per_category: {6 * n}\n"
            f"evaluate:\n  max_eval_pairs: {max(1, n // 2)}\n")


def stage_of_rules(wf: Path) -> dict[str, str]:
    """rule name -> the rules file (stage) that defines it."""
    out = {}
    for smk in sorted((wf / "workflow" / "rules").glob("*.smk")):
        for rule in re.findall(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), re.M):
            out[rule] = smk.stem
    return out


def job_table(bench: Path, stages: dict[str, str]) -> dict[str, dict]:
    """Per stage: summed job seconds, jobs, peak RSS (MB) from Snakemake's benchmark files."""
    import pandas as pd

    out: dict[str, dict] = {}
    for tsv in sorted(bench.rglob("*.tsv")):
        rel = tsv.relative_to(bench)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        df = pd.read_csv(tsv, sep="\t")
        st = out.setdefault(stages.get(rule, "?"), {"s": 0.0, "jobs": 0, "rss": 0.0})
        st["s"] += float(df["s"].iloc[-1])
        st["jobs"] += 1
        st["rss"] = max(st["rss"], float(pd.to_numeric(df["max_rss"], errors="coerce").fillna(0).iloc[-1]))
    return out


def fit(ns, ss) -> tuple[float, float]:
    """(exponent of s ~ N^k, least squares in log-log; fixed cost a >= 0 of s = a + b N)."""
    pts = [(math.log(n), math.log(s)) for n, s in zip(ns, ss) if s > 0]
    if len(pts) < 2:
        return float("nan"), float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    mn, ms = sum(ns) / len(ns), sum(ss) / len(ss)
    b = sum((n - mn) * (s - ms) for n, s in zip(ns, ss)) / sum((n - mn) ** 2 for n in ns)
    return k, max(0.0, ms - b * mn)


def run_size(n: int, args, work: Path) -> tuple[float, dict]:
    wf = work / f"n{n}"
    wf.mkdir(parents=True)
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, wf / item)
        elif src.exists():
            shutil.copy2(src, wf / item)
    (wf / "src").symlink_to(REPO / "src")
    (wf / "scale.yaml").write_text(overlay(n, args.category))
    log = wf / "snakemake.log"
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                               "--configfile", "config/config.yaml", "scale.yaml"],
                              cwd=wf, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        sys.exit("\n".join(tail) + f"\nbench_scale: the run at N = {n} failed (log: {log})")
    return wall, job_table(wf / "results" / f"scale_{n}" / "benchmarks", stage_of_rules(wf))


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sopcorr-bench-scale."))
    print(f"bench_scale: sizes {args.sizes}, category {args.category}, --cores {args.cores}; "
          f"work folder {work}", flush=True)
    try:
        walls, tables = {}, {}
        for n in args.sizes:
            walls[n], tables[n] = run_size(n, args, work)
            tot = sum(v["s"] for v in tables[n].values())
            print(f"  N = {n:4d}: wall {walls[n]:7.1f} s, summed job seconds {tot:7.1f}", flush=True)
        stages = sorted({s for t in tables.values() for s in t},
                        key=lambda s: -tables[args.sizes[-1]].get(s, {"s": 0})["s"])
        head = "| stage | " + " | ".join(f"N={n} job s (peak MB)" for n in args.sizes) + \
               " | exponent k | fixed cost a (s) |"
        print("\n" + head + "\n|---|" + "--:|" * (len(args.sizes) + 2))
        for st in stages:
            ss = [tables[n].get(st, {"s": 0.0})["s"] for n in args.sizes]
            k, a = fit(args.sizes, ss)
            cells = " | ".join(f"{tables[n].get(st, {'s': 0})['s']:.1f} ({tables[n].get(st, {'rss': 0})['rss']:.0f})"
                               for n in args.sizes)
            tag = " (fixed-cost dominated)" if k < FIXED_EXPONENT else ""
            print(f"| {st} | {cells} | {k:.2f}{tag} | {a:.1f} |")
        totals = [sum(v["s"] for v in tables[n].values()) for n in args.sizes]
        k, a = fit(args.sizes, totals)
        kw, aw = fit(args.sizes, [walls[n] for n in args.sizes])
        print(f"| **end to end, summed job seconds** | " + " | ".join(f"{t:.1f}" for t in totals) +
              f" | {k:.2f} | {a:.1f} |")
        print(f"| end to end, wall clock | " + " | ".join(f"{walls[n]:.1f}" for n in args.sizes) +
              f" | {kw:.2f} | {aw:.1f} |")
    finally:
        if args.keep:
            print(f"bench_scale: work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
