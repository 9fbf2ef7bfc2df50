#!/usr/bin/env bash
# The GPU's checks in one command, for a machine with an NVIDIA GPU: builds with CUDA (for this GPU's
# architecture), runs the CUDA tests, then vt bench-train --device cuda of both presets in fp32 and bf16 and
# PyTorch's eager and autocast steps of the same models. Each step has a time limit and writes its log into
# OUT_DIR (default runs/gpu_check), so that a run cut short still leaves what it did; a failed step does not
# stop the next. Usage: scripts/gpu_check.sh [OUT_DIR]
# Where the build's Debian packages are missing and cannot be installed, carry them as .deps-debs (made here by
# `sh ../shared/tools/offline-deps.sh` and `(cd .deps-debs && apt-get download libcli11-dev)`): they are
# unpacked under /opt/deps first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
out=${1:-runs/gpu_check}
mkdir -p "$out"
# shellcheck disable=SC1091  # written by unpack.sh
if [ -d .deps-debs ]; then sh .deps-debs/unpack.sh unpack >/dev/null && . /opt/deps/env.sh; fi

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit, its output into $out/NAME.log; one summary line.
step() {
  local name=$1 seconds=$2 start=$SECONDS rc
  shift 2
  timeout "$seconds" "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.log"
}

nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv >"$out/summary.log" 2>&1
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
step build 300 bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DVT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=${arch:-90} && cmake --build build-gpu -j $(nproc)"
step cuda_tests 240 build-gpu/vt_tests -tc="cuda*" --duration=true
{
  for model in vit_cifar tnt_cifar; do
    for amp in none bf16; do
      echo "== vt bench-train --device cuda --model $model --batch 512 --amp $amp"
      timeout 90 build-gpu/vt bench-train --device cuda --model "$model" --batch 512 --amp "$amp" 2>&1
    done
  done
} >"$out/bench_vt.log" 2>&1
echo "bench_vt: done" | tee -a "$out/summary.log"
{
  for model in vit_cifar tnt_cifar; do
    echo "== bench/pytorch_train_step.py $model --device cuda --batch 512 --modes eager,amp"
    timeout 120 python3 bench/pytorch_train_step.py "$model" --device cuda --batch 512 --modes eager,amp 2>&1
  done
} >"$out/bench_pytorch.log" 2>&1
echo "bench_pytorch: done" | tee -a "$out/summary.log"
