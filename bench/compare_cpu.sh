#!/usr/bin/env bash
# vt against PyTorch from pip on this CPU: training and inference images/s of both CIFAR presets (tnt_cifar
# with timm's 7x7 pixel conv), each vt bench-train run in turn with bench/pytorch_train_step.py, RUNS times;
# prints the medians as a Markdown table with vt / PyTorch, the roofline fraction vt bench-train reports
# (against the bf16 GEMM peak in the bf16 rows, which a CPU with AMX or AVX512-BF16 adds) and each process's
# peak RSS (getrusage's high-water mark, the interpreter and its libraries included for PyTorch).
# Usage: bench/compare_cpu.sh [RUNS] (PYTHON=/opt/tref/bin/python, VT=build/vt, THREADS=all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
vt=${VT:-build/vt}
python=${PYTHON:-/opt/tref/bin/python}
threads=${THREADS:-$(nproc)}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
m() { printf '%s\n' "$@" | median; }
# The number after the word $1 in the text $2; a run whose output lacks it stops the table, showing the output.
field() {
  local value
  value=$(echo "$2" | sed -n "s/.* $1 \([0-9.]*\)[ %].*/\1/p")
  if [ -z "$value" ]; then echo "no '$1' figure in:" >&2; echo "$2" >&2; exit 1; fi
  echo "$value"
}
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

echo "$(lscpu | sed -n 's/^Model name: *//p'), $threads threads; $("$python" -c 'import torch; print("PyTorch", torch.__version__)')"
echo
echo "| batch 128 | vt training | PyTorch training | ratio | vt inference | PyTorch inference | ratio | vt roofline | vt peak RSS | PyTorch peak RSS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# bf16 rows where the CPU has AMX or AVX512-BF16: vt --amp bf16 against PyTorch's autocast to bf16.
precisions=(fp32)
info=$("$vt" info --model vit_cifar)
[[ $info == *"bf16 matmuls: none"* ]] || precisions+=(bf16)
for precision in "${precisions[@]}"; do
  for model in vit_cifar tnt_cifar; do
    overrides=$([ "$model" = tnt_cifar ] && echo "pixel_kernel=7" || true)
    amp=$([ "$precision" = bf16 ] && echo bf16 || echo none)
    mode=$([ "$precision" = bf16 ] && echo amp || echo eager)
    vt_train=() vt_infer=() roofline=() vt_rss=() torch_train=() torch_infer=() torch_rss=()
    for _ in $(seq "$runs"); do
      # shellcheck disable=SC2086  # the overrides are separate words
      out=$("$vt" bench-train --model "$model" $overrides --device cpu --amp "$amp" --threads "$threads" 2>&1)
      vt_train+=("$(field training "$out")") || exit 1
      vt_infer+=("$(field inference "$out")") || exit 1
      roofline+=("$(field reached "$out")") || exit 1
      vt_rss+=("$(field RSS "$out")") || exit 1
      out=$("$python" bench/pytorch_train_step.py "$model" --modes "$mode" --threads "$threads" 2>&1)
      torch_train+=("$(field training "$out")") || exit 1
      torch_infer+=("$(field inference "$out")") || exit 1
      torch_rss+=("$(field RSS "$out")") || exit 1
    done
    vt_t=$(m "${vt_train[@]}") vt_i=$(m "${vt_infer[@]}") pt_t=$(m "${torch_train[@]}") pt_i=$(m "${torch_infer[@]}")
    label=$model$([ "$precision" = bf16 ] && echo ", bf16 (--amp bf16 / autocast)" || true)
    echo "| $label | $vt_t | $pt_t | $(ratio "$vt_t" "$pt_t") | $vt_i | $pt_i | $(ratio "$vt_i" "$pt_i") | $(m "${roofline[@]}")% | $(m "${vt_rss[@]}") GiB | $(m "${torch_rss[@]}") GiB |"
  done
done
