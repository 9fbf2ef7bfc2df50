#!/usr/bin/env bash
# The libFuzzer harnesses of tests/fuzz (clang, ASan + UBSan): builds them into build-fuzz, then runs each on its
# seed corpus tests/fuzz/<name>/ (new inputs go to build-fuzz/corpus/<name>/, crashes to build-fuzz/crashes/).
#   scripts/fuzz.sh --smoke          each harness over its seed corpus, no mutations (CI: a harness cannot rot,
#                                    and the result is the same on every run, unlike a random search)
#   scripts/fuzz.sh --runs N         each harness for N executions
#   scripts/fuzz.sh --seconds S      each harness for S seconds
# Harness names after the limit run only those (safetensors image cifar config training_state).
# Exits non-zero on the first harness that finds a crash, a leak, an out-of-memory or a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---smoke}
case "$mode" in
  --smoke) limit=(-runs=0); shift $(($# > 0 ? 1 : 0)) ;;
  --runs) limit=(-runs="$2"); shift 2 ;;
  --seconds) limit=(-max_total_time="$2"); shift 2 ;;
  *) echo "usage: scripts/fuzz.sh [--smoke | --runs N | --seconds S] [harness ...]" >&2; exit 2 ;;
esac
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(safetensors image cifar config training_state)
cmake -S . -B build-fuzz -DVT_FUZZ=ON -DVT_CUDA=OFF -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)"
mkdir -p build-fuzz/crashes
for harness in "${harnesses[@]}"; do
  mkdir -p "build-fuzz/corpus/$harness"
  echo "fuzz_$harness ${limit[*]}"
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: one that needs 2 GB is a memory bomb.
  status=0
  "build-fuzz/fuzz_$harness" "build-fuzz/corpus/$harness" "tests/fuzz/$harness" "${limit[@]}" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="build-fuzz/crashes/$harness-" -print_final_stats=1 \
    >"build-fuzz/fuzz_$harness.log" 2>&1 || status=$?
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)|ERROR|runtime error|Test unit written" \
    "build-fuzz/fuzz_$harness.log" || true
  [ "$status" -eq 0 ] || { echo "fuzz_$harness failed: see build-fuzz/fuzz_$harness.log and build-fuzz/crashes/" >&2; exit 1; }
done
