#!/usr/bin/env bash
# GPU check of the Siamese networks: a few mixed-precision training steps at paper scale, pairs/s
# and the ratio to a bare forward+backward of the same network (bench_siamese.py).
#  1. the correlation network (the default architecture) end to end from images: VGG16 conv5_3 at
#     704 px (the paper's 44 x 44 x 512 grid, config/paper.yaml's backbone), 8 pairs a step;
#  2. the same network's head alone on encoder grids (freeze_encoder: true, the CPU default);
#  3. the paper's flow network end to end at its 352 px input, 16 pairs a step (config/paper.yaml);
#  4. the pipeline's GPU rules on a tiny synthetic category (gpu_rules.py, its own defaults: the
#     extra arguments are not passed to it): train_siamese, a self-training round from the previous
#     checkpoint (where run_training has start_from), finetune_siamese, the checkpoints on the CPU.
# Random VGG16 weights stand in when the ImageNet file is absent (same timing). Extra arguments go
# to every bench_siamese.py call.
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
LAYERS=(--layers conv5_3)
for a in "$@"; do [ "$a" = "--backbone" ] && LAYERS=(); done   # another backbone: its default layers
echo "== correlation network, end to end"
"$PY" benchmarks/bench_siamese.py --architecture correlation --backbone vgg16 "${LAYERS[@]}" --size 704 --batch 8 --steps 20 --warmup 3 "$@"
echo "== correlation network, head on encoder grids"
"$PY" benchmarks/bench_siamese.py --architecture correlation --backbone vgg16 "${LAYERS[@]}" --size 704 --batch 8 --steps 20 --warmup 3 --freeze-encoder "$@"
echo "== paper flow network, end to end"
"$PY" benchmarks/bench_siamese.py --architecture paper --backbone vgg16 --size 352 --batch 16 --steps 20 --warmup 3 "$@"
echo "== the GPU rules: train, a round from the previous checkpoint, fine-tune (gpu_rules.py)"
"$PY" benchmarks/gpu_rules.py
