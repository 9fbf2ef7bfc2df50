#!/usr/bin/env bash
# Installs the Debian packages the build needs, only those that are missing (Debian 12; root or sudo).
set -euo pipefail
# clang and its runtime libraries build the fuzz harnesses (scripts/fuzz.sh).
packages=(cmake g++ make libopenblas-dev libopenblas-openmp-dev doctest-dev libstb-dev libcli11-dev clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
