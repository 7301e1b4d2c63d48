#!/usr/bin/env bash
# GPU check of the Siamese flow network: a few mixed-precision training steps at the paper's
# input size (VGG16, 352 px: conv4_3 at stride 8 gives the paper's 44 x 44 grid), pairs/s and the
# ratio to a bare forward+backward of the same network (batch 16 pairs as config/paper.yaml). Extra arguments go to bench_siamese.py.
#   benchmarks/gpu_check.sh                                    # on a CUDA machine
#   benchmarks/gpu_check.sh --device cpu --backbone efficientnet_lite0 --size 64 --batch 2 --steps 2 --warmup 1
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  echo "nvidia-smi not found: no CUDA GPU visible (pass --device cpu for the CPU fallback)"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"
# end to end (the paper trains the encoder too), then with the encoder frozen (the CPU default)
"$PY" benchmarks/bench_siamese.py --backbone vgg16 --size 352 --batch 16 --steps 20 --warmup 3 "$@"
"$PY" benchmarks/bench_siamese.py --backbone vgg16 --size 352 --batch 16 --steps 20 --warmup 3 --freeze-encoder "$@"
