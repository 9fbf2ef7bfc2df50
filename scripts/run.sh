#!/usr/bin/env bash
# The main job: installs what is missing, builds, fetches CIFAR-10 into data/ (from ../shared/data when the
# archive is there, else the official download), and trains vit_cifar with its default recipe.
# Extra arguments go to vt train, e.g. scripts/run.sh --model tnt_cifar --epochs 5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build
if [ ! -d data/train ] && [ ! -e data/data_batch_1.bin ] && [ ! -e data/cifar-10-batches-bin/data_batch_1.bin ]; then
  archive=../shared/data/cifar10-jpg.tar.gz
  if [ -f "$archive" ]; then bash scripts/get_cifar10.sh "$archive" data; else bash scripts/get_cifar10.sh; fi
fi
# A flag given again in "$@" wins over these defaults.
./build/vt train --model vit_cifar --data data "$@"
