#!/usr/bin/env bash
# The ablation study (issue 8): every stage of the paper's and the improved variant, measured
# alike. Writes results/<run>/tables/ablation.{csv,md} and results/<run>/figures/ablation.png
#   - on the synthetic default (dense ground truth: pair-wise and dense metrics);
#   - on the real development split ../shared/data/pfwillow_dev when that folder exists.
# How long (2 cores): the synthetic part about 5 min after `make demo` (an estimate from the job
# times of its stages: the paper variant's manifold, flow and network, four ablation_category
# jobs; not timed end to end), the dev-split part about 25 min (docs/RESULTS.md), most of it the
# two ablation_category jobs at ~8 min each. Exempt from the benchmarks' two-minute rule: it
# runs the pipeline.
# Usage: benchmarks/ablation.sh [--cores N]   (from anywhere; it runs in the repository root)
set -euo pipefail
usage() {
    echo "usage: $0 [--cores N]" >&2
    echo "  runs the ablation target of the synthetic default (about 5 min on 2 cores after make demo," >&2
    echo "  an estimate) and, when ../shared/data/pfwillow_dev exists, of the PF-WILLOW dev split" >&2
    echo "  (about 25 min more)" >&2
}
cd "$(dirname "$0")/.."
SNAKEMAKE=${SNAKEMAKE:-.venv/bin/snakemake}
CORES=${CORES:-all}
while [ $# -gt 0 ]; do
    case $1 in
        --cores)
            [ $# -ge 2 ] && [[ $2 =~ ^([0-9]+|all)$ ]] || { usage; exit 2; }
            CORES=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage; exit 2 ;;
    esac
    shift
done
echo "ablation: the synthetic default (about 5 min on 2 cores after make demo), then the dev split if present (about 25 min)"
"$SNAKEMAKE" --cores "$CORES" --configfile config/config.yaml -- results/default/tables/ablation.csv
cat results/default/tables/ablation.md
if [ -f ../shared/data/pfwillow_dev/dataset.json ]; then
  "$SNAKEMAKE" --cores "$CORES" --configfile config/config.yaml config/pfwillow.yaml -- results/pfwillow/tables/ablation.csv
  cat results/pfwillow/tables/ablation.md
else
  echo "../shared/data/pfwillow_dev not found: the real-photo part is skipped"
fi
