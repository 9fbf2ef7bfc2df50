#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test in the optimised build (with the CUDA
# backend where nvcc is installed; its GPU tests skip without a GPU), every fuzz harness over its seed corpus, then
# every test under AddressSanitizer + UndefinedBehaviorSanitizer in a CPU-only build (skip that with
# --no-sanitize), so that a build without CUDA stays tested too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
(cd build && ctest --output-on-failure -j "$(nproc)")
bash scripts/fuzz.sh --smoke
if [ "${1:-}" != "--no-sanitize" ]; then
  bash scripts/build.sh build-asan -DVT_SANITIZE=ON -DVT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  (cd build-asan && ctest --output-on-failure -j "$(nproc)")
fi
