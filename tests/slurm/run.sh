#!/usr/bin/env bash
# A real single-node SLURM run (issue 7, item 2); `make test-slurm` runs it.
#
# Installs slurm-wlm and munge when missing (apt-get, needs root), starts a private one-node
# cluster on localhost (tests/slurm/cluster.sh: own munge key and socket, own ports, node =
# this machine's cores and memory plus one scheduling-only GPU), runs the workflow on the tiny
# integration config once locally (--profile profiles/local) and once through SLURM (the
# repository's profiles/slurm, with numbers clamped to the node by make_profile.py), checks
# that every job went through sbatch, that SLURM recorded each as COMPLETED, that the GPU rules
# asked for a GPU, and that the tables equal those of the local run (check.py). The daemons it
# started are stopped on exit, also on failure or Ctrl-C.
#
# Environment: SOPCORR_SLURM_TARGETS  targets (default: the workflow's default target)
#              SOPCORR_SLURM_CONFIG   overlay config (default: tests/integration/tiny.yaml)
#              SOPCORR_SLURM_KEEP=1   keep the work folder (printed) for inspection
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
CONFIG=${SOPCORR_SLURM_CONFIG:-$REPO/tests/integration/tiny.yaml}
read -r -a TARGETS <<< "${SOPCORR_SLURM_TARGETS:-}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0

# shellcheck source=tests/slurm/cluster.sh
source "$REPO/tests/slurm/cluster.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sopcorr-slurm.XXXXXX")
cleanup() {
    local rc=$?
    slurm_stop
    if [ "${SOPCORR_SLURM_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "tests/slurm: work folder kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
stamp() { echo "tests/slurm: [$(( $(date +%s) - t0 )) s] $*"; }

slurm_install
stamp "starting munged, slurmctld, slurmd in $WORK/cluster"
slurm_start "$WORK/cluster"
sinfo -N -o "%N %t %c %m %G" | sed 's/^/tests\/slurm:   /'

"$PY" - "$WORK" "$REPO/tests" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from integration.helpers import copy_workflow
work = Path(sys.argv[1])
copy_workflow(work / "local")
copy_workflow(work / "slurm")
PY
"$PY" "$REPO/tests/slurm/make_profile.py" "$REPO/profiles/slurm" "$WORK/slurm/profiles/slurm-test" \
    "$SLURM_TEST_CPUS" "$SLURM_TEST_MEM_MB"

stamp "local run (--profile profiles/local)"
(cd "$WORK/local" && "$PY" -m snakemake "${TARGETS[@]}" --profile profiles/local \
    --cores "$SLURM_TEST_CPUS" --configfile config/config.yaml "$CONFIG") > "$WORK/local.log" 2>&1 \
    || { tail -40 "$WORK/local.log" >&2; echo "tests/slurm: the local run failed" >&2; exit 1; }

stamp "SLURM run (--profile profiles/slurm, clamped to the node)"
(cd "$WORK/slurm" && "$PY" -m snakemake "${TARGETS[@]}" --profile profiles/slurm-test \
    --configfile config/config.yaml "$CONFIG") > "$WORK/slurm.log" 2>&1 \
    || { tail -60 "$WORK/slurm.log" >&2; echo "tests/slurm: the SLURM run failed" >&2; exit 1; }

stamp "checking"
"$PY" "$REPO/tests/slurm/check.py" "$WORK/local" "$WORK/slurm" "$WORK/slurm.log" "$WORK/cluster/jobcomp.log"
stamp "passed"
