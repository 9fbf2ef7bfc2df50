#!/usr/bin/env bash
# The GPU's checks, for a machine with an NVIDIA GPU, in parts that each fit a 10-minute slot (each step has a
# time limit). Each step appends its log to OUT_DIR (default runs/gpu_check), so that a run cut short still
# leaves what it did; a failed step does not stop the next, and summary.log has every exit code.
#   vt (the default)  the CUDA tests (VT_CUDA_SYNC=1), the short GPU-against-CPU training run, then
#                     vt bench-train --device cuda --batch 512 of both presets in fp32 and bf16
#   pytorch           bench/pytorch_train_step.py of timm's same models (MODES, default eager,amp,compile)
#   profile           Nsight Compute's time of every kernel in the first launches of vt bench-train --device
#                     cuda, both presets in fp32 (ncu_<model>.csv), and scripts/ncu_summary.py's table of one
#                     training step (profile.log)
#   train             vt train --device cuda on CIFAR-10 (DATA_ARCHIVE, the image-folder tarball, unpacked into
#                     data/) of MODELS (default vit_cifar tnt_cifar), each with --time-budget TRAIN_SECONDS (100)
# Usage: scripts/gpu_check.sh [OUT_DIR] [vt|pytorch|profile|train] (PYTHON=python3: the one with torch and timm)
# BIN=DIR: use DIR/vt and DIR/vt_tests, built elsewhere for this GPU (cmake -DCMAKE_CUDA_ARCHITECTURES=90-real
# -DVT_NATIVE=OFF), if `DIR/vt info --model vit_cifar` runs here; else a CUDA build for this GPU's architecture
# into build-gpu first. Where the build's Debian packages are missing and cannot be installed, carry them as
# .deps-debs (made here by `sh ../shared/tools/offline-deps.sh` and `(cd .deps-debs && apt-get download
# libcli11-dev)`): they are unpacked under /opt/deps first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit
out=${1:-runs/gpu_check}
part=${2:-vt}
python=${PYTHON:-python3}
mkdir -p "$out"
# shellcheck disable=SC1091  # written by unpack.sh
if [ -d .deps-debs ]; then sh .deps-debs/unpack.sh unpack >/dev/null && . /opt/deps/env.sh; fi

# step NAME SECONDS COMMAND...: runs COMMAND with a time limit (then SIGKILL 10 s later), its output appended
# to $out/NAME.log; one summary line with its exit code (124: out of time).
step() {
  local name=$1 seconds=$2 start=$SECONDS rc
  shift 2
  echo "== $*" >>"$out/$name.log"
  timeout -k 10 "$seconds" "$@" >>"$out/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s: $*" | tee -a "$out/summary.log"
}

case $part in
  vt | pytorch | train | profile) ;;
  *) echo "gpu_check.sh: the part is vt, pytorch, train or profile, not '$part'" >&2; exit 2 ;;
esac
rm -f "$out"/*.log "$out"/*.csv
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv >"$out/summary.log" 2>&1
bin=${BIN:-build-gpu}
if [ "$part" != pytorch ] && ! "$bin/vt" info --model vit_cifar >"$out/info.log" 2>&1; then
  bin=build-gpu
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
  [[ $arch =~ ^[0-9]+$ ]] || arch=90  # no answer: Hopper (H100, H200)
  step build 240 bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DVT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=$arch && cmake --build build-gpu -j $(nproc) --target vt vt_tests"
  "$bin/vt" info --model vit_cifar >"$out/info.log" 2>&1
fi
if [ "$part" = vt ]; then
  # VT_CUDA_SYNC=1: a failing kernel is named by its own launch, not by the next check.
  step cuda_tests 150 env VT_CUDA_SYNC=1 "$bin/vt_tests" -tc="cuda*" --duration=true
  step cuda_end_to_end 120 "$bin/vt_tests" -tc="end to end (cuda)*" --duration=true
  for model in vit_cifar tnt_cifar; do
    for amp in none bf16; do
      step bench_vt 25 "$bin/vt" bench-train --device cuda --model "$model" --batch 512 --amp "$amp"
    done
  done
elif [ "$part" = profile ]; then
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  for model in ${MODELS:-vit_cifar tnt_cifar}; do
    # --clock-control none: the card's clocks as training sees them.
    step "ncu_$model" 120 bash -c "'$ncu' --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
      -c 3000 '$bin/vt' bench-train --device cuda --model $model --batch 512 >'$out/ncu_$model.csv'"
    step profile 20 "$python" scripts/ncu_summary.py "$out/ncu_$model.csv"
  done
elif [ "$part" = train ]; then
  mkdir -p data
  [ -d data/train ] || tar -xzf "${DATA_ARCHIVE:?the part train needs DATA_ARCHIVE}" -C data
  for model in ${MODELS:-vit_cifar tnt_cifar}; do
    step "train_$model" $((${TRAIN_SECONDS:-100} + 60)) "$bin/vt" train --device cuda --model "$model" --data data \
      --time-budget "${TRAIN_SECONDS:-100}" --workers "$(nproc)" --out "runs/gpu_$model"
  done
else
  for model in vit_cifar tnt_cifar; do  # torch.compile's first step compiles: most of each limit
    step bench_pytorch 280 "$python" bench/pytorch_train_step.py "$model" --device cuda --batch 512 \
      --modes "${MODES:-eager,amp,compile}"
  done
fi
