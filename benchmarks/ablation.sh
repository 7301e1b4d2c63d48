#!/usr/bin/env bash
# The ablation study (issue 8): every stage of the paper's and the improved variant, measured
# alike. Writes results/<run>/tables/ablation.{csv,md} and results/<run>/figures/ablation.png
#   - on the synthetic default (dense ground truth: pair-wise and dense metrics);
#   - on the real development split ../shared/data/pfwillow_dev when that folder exists.
# Usage: benchmarks/ablation.sh [--cores N]   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE=${SNAKEMAKE:-.venv/bin/snakemake}
CORES=${CORES:-all}
"$SNAKEMAKE" --cores "$CORES" --configfile config/config.yaml -- results/default/tables/ablation.csv
cat results/default/tables/ablation.md
if [ -f ../shared/data/pfwillow_dev/dataset.json ]; then
  "$SNAKEMAKE" --cores "$CORES" --configfile config/config.yaml config/pfwillow.yaml -- results/pfwillow/tables/ablation.csv
  cat results/pfwillow/tables/ablation.md
else
  echo "../shared/data/pfwillow_dev not found: the real-photo part is skipped"
fi
