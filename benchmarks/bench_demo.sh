#!/usr/bin/env bash
# Time the default run (`make demo`) end to end and each stage's share (issue 7, item 8).
#
#   bash benchmarks/bench_demo.sh [--install] [--cores N] [--keep]
#
# Runs in a throw-away copy of the workflow (your results/ stay untouched) with the repository's
# .venv: first the main job (`snakemake --cores N --configfile config/config.yaml`, what
# `make demo` runs first), then the report step. Prints the wall-clock time of each and a table
# per stage from Snakemake's benchmark files (results/default/benchmarks/**/*.tsv): jobs, summed
# job seconds, share of the summed seconds, the slowest job and the peak RSS.
# --install also times `make install` in a fresh `git clone` of this repository (a new .venv
# from PyPI: needs the network; excluded from the main-job figure).
# --keep keeps the work folder (printed).
# How long: 3-6 min on an idle 2-core machine (main job 147 s and report 2 s on the machine of
# docs/PERFORMANCE.md; machines differ by up to 2x), plus `make install` with --install. Exempt
# from the benchmarks' two-minute rule.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$REPO/.venv/bin/python
usage() {
    echo "usage: $0 [--install] [--cores N] [--keep]" >&2
    echo "  times the default run (make demo) in a throw-away copy: 3-6 min on an idle 2-core machine" >&2
}
CORES=all
INSTALL=0
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --install) INSTALL=1 ;;
        --cores)
            [ $# -ge 2 ] && [[ $2 =~ ^([0-9]+|all)$ ]] || { usage; exit 2; }
            CORES=$2; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
    shift
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sopcorr-bench-demo.XXXXXX")
if [ "$KEEP" = 1 ]; then
    trap 'echo "bench_demo: work folder kept: $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "bench_demo: this takes 3-6 min on an idle 2-core machine (longer on a busy one)"
echo "bench_demo: $(nproc) CPU cores, --cores $CORES, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "bench_demo: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$INSTALL" = 1 ]; then
    git clone --quiet "$REPO" "$WORK/clone"
    t=$(now)
    (cd "$WORK/clone" && make install PYTHON="${PYTHON:-python3}") > "$WORK/install.log" 2>&1
    echo "bench_demo: make install (fresh clone, new .venv): $(elapsed "$t" "$(now)") s"
fi

mkdir -p "$WORK/wf"
for item in Snakefile workflow config profiles envs; do
    [ -e "$REPO/$item" ] && cp -r "$REPO/$item" "$WORK/wf/"
done
ln -s "$REPO/src" "$WORK/wf/src"
cd "$WORK/wf"

t=$(now)
"$PY" -m snakemake --cores "$CORES" --configfile config/config.yaml > "$WORK/main.log" 2>&1 \
    || { tail -30 "$WORK/main.log" >&2; echo "bench_demo: the main job failed" >&2; exit 1; }
main_s=$(elapsed "$t" "$(now)")
t=$(now)
"$PY" -m snakemake --cores "$CORES" --configfile config/config.yaml \
    --report results/default/report.html > "$WORK/report.log" 2>&1 \
    || { tail -30 "$WORK/report.log" >&2; echo "bench_demo: the report step failed" >&2; exit 1; }
report_s=$(elapsed "$t" "$(now)")
echo "bench_demo: main job (snakemake --cores $CORES): ${main_s} s wall clock"
echo "bench_demo: report step (--report): ${report_s} s wall clock"
echo "bench_demo: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$WORK/wf" <<'PY'
"""Per-stage summary of Snakemake benchmark files; stage = the rules file defining the rule."""
import re
import sys
from pathlib import Path

import pandas as pd

wf = Path(sys.argv[1])
stage_of = {}
for smk in sorted((wf / "workflow" / "rules").glob("*.smk")):
    for rule in re.findall(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), re.M):
        stage_of[rule] = smk.stem
bench = wf / "results" / "default" / "benchmarks"
rows = []
for tsv in sorted(bench.rglob("*.tsv")):
    rel = tsv.relative_to(bench)
    rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    df = pd.read_csv(tsv, sep="\t")
    rows.append({"stage": stage_of.get(rule, "?"), "rule": rule, "job": str(rel.with_suffix("")),
                 "s": float(df["s"].iloc[-1]), "max_rss": float(pd.to_numeric(df["max_rss"], errors="coerce").fillna(0).iloc[-1])})
if not rows:
    sys.exit("bench_demo: no benchmark files under " + str(bench))
jobs = pd.DataFrame(rows)
total = jobs["s"].sum()
g = jobs.groupby("stage")
out = pd.DataFrame({
    "jobs": g.size(),
    "job_s": g["s"].sum().round(1),
    "share_%": (100 * g["s"].sum() / total).round(1),
    "slowest_job_s": g["s"].max().round(1),
    "peak_rss_MB": g["max_rss"].max().round(0),
}).sort_values("job_s", ascending=False)
print(f"\nper stage (summed job seconds: {total:.1f}; jobs run in parallel, so the sum exceeds the wall clock):")
print(out.to_string())
print("\nslowest jobs:")
print(jobs.sort_values("s", ascending=False).head(8)[["job", "s", "max_rss"]].to_string(index=False))
PY
