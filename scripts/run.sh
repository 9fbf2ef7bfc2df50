#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
./build/vt demo "$@"
