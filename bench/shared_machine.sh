#!/usr/bin/env bash
# Training speed on an idle machine against the same machine with another process busy on one core: vt
# bench-train of a small model (many small kernels, so thread barriers dominate) and of vit_cifar, idle and
# loaded in turn, medians of RUNS. The ratio loaded/idle is the share of the idle speed a busy neighbour leaves
# (about 0.5 is a fair share of 2 cores). Extra arguments go to every bench-train, e.g. --threads 2.
# Usage: bench/shared_machine.sh [RUNS] [bench-train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
vt=${VT:-build/vt}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
training_speed() { "$vt" bench-train "$@" | sed -n 's/.* training \([0-9.]*\) images\/s.*/\1/p'; }

for model in "vit_cifar depth=2 dim=64 heads=2" "vit_cifar"; do
  idle=() loaded=()
  for _ in $(seq "$runs"); do
    # shellcheck disable=SC2086  # the model's overrides are separate words
    idle+=("$(training_speed --model $model "$@")")
    taskset -c "$(($(nproc) - 1))" sh -c 'while :; do :; done' &
    busy=$!
    # shellcheck disable=SC2086
    loaded+=("$(training_speed --model $model "$@")")
    kill "$busy"
    wait "$busy" 2>/dev/null || true
  done
  idle_median=$(printf '%s\n' "${idle[@]}" | median)
  loaded_median=$(printf '%s\n' "${loaded[@]}" | median)
  echo "$model: idle ${idle[*]} -> median $idle_median images/s; one core busy ${loaded[*]} -> median" \
    "$loaded_median images/s; loaded/idle $(awk "BEGIN { printf \"%.2f\", $loaded_median / $idle_median }")"
done
