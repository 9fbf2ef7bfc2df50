#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches CIFAR-10 into data/ (from ../shared/data when the
# archive is there, else the official download), and trains a ViT for one hour of this machine: a narrower
# vit_cifar with the short-budget recipe, its epochs fitted to --time-budget 3600, with bf16 matmuls where
# they are faster on this CPU (see README).
# Arguments replace that recipe and go to vt train after --model vit_cifar --data data, e.g.
# scripts/run.sh --model tnt_cifar --epochs 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
if [ ! -d data/train ] && [ ! -e data/data_batch_1.bin ] && [ ! -e data/cifar-10-batches-bin/data_batch_1.bin ]; then
  archive=../shared/data/cifar10-jpg.tar.gz
  if [ -f "$archive" ]; then bash scripts/get_cifar10.sh "$archive" data; else bash scripts/get_cifar10.sh; fi
fi
if [ $# -eq 0 ]; then
  # bf16 matmuls where this CPU's bf16 GEMM kernel beats its float32 one by a third or more, as vt bench-gemm
  # measures them in a few seconds: more epochs in the hour. Measured so far: AMX about 5.7x on a Xeon,
  # AVX512-BF16 about 1.9x on a Zen 4; the Xeon's AVX512-BF16 kernel alone was slower than float32.
  amp=()
  gemm=$(./build/vt bench-gemm)
  sgemm_peak=$(echo "$gemm" | sed -n 's/^sgemm peak GFLOP\/s: //p')
  bf16_peak=$(echo "$gemm" | sed -n 's/^bf16 gemm peak GFLOP\/s ([^)]*): //p')
  if [ -n "$bf16_peak" ] && awk "BEGIN { exit !($bf16_peak >= 1.3 * $sgemm_peak) }"; then amp=(--amp bf16); fi
  echo "GEMM peaks: float32 $sgemm_peak GFLOP/s, bf16 ${bf16_peak:-none}; training with ${amp[*]:-float32 matmuls}"
  ./build/vt train --data data --model vit_cifar dim=128 depth=6 heads=4 mlp_ratio=2 drop_path_rate=0 pool=mean \
    --aug crop=4,flip=1,auto=none --lr 2e-3 --warmup 1 --clip-grad 1 --time-budget 3600 "${amp[@]}"
else
  ./build/vt train --model vit_cifar --data data "$@"  # a flag given again in "$@" wins over these
fi
