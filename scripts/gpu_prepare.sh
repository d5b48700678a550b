#!/usr/bin/env bash
# On this machine, before a borrowed-GPU run: put what the GPU machine cannot download into git-ignored folders that
# travel with the working tree (carry them: .data and .whl).
#   .data/fashion_mnist/  the four Fashion-MNIST IDX files (from $FASHION, default the Debian package's folder)
#   .whl/site/            the pure-Python or abi3 packages a GPU image may lack (pyautoattack, safetensors, tabulate,
#                         fastcore), downloaded from PyPI and unpacked; pyautoattack's 42 MB of example models left out
# Then: LOLIP_COMMIT=$(git rev-parse HEAD) BUDGET=7m bash scripts/gpu_fashion.sh   (on the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}
rm -rf .whl; mkdir -p .data/fashion_mnist .whl
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$FASHION/$f.gz" ] || { echo "no $FASHION/$f.gz: install Debian's dataset-fashion-mnist or set FASHION" >&2; exit 1; }
  cp "$FASHION/$f.gz" .data/fashion_mnist/
done
PIP=${PIP:-$(command -v .venv/bin/pip || command -v pip3)}
"$PIP" download -q --no-deps --only-binary :all: --dest .whl --platform manylinux2014_x86_64 --python-version 3.10 \
  --implementation cp --abi abi3 "safetensors>=0.4"
"$PIP" download -q --no-deps --dest .whl "pyautoattack>=0.2" "tabulate>=0.9" "fastcore>=1.5"
"$PIP" install -q --no-deps --no-compile --target .whl/site .whl/*.whl
rm -rf .whl/site/pyautoattack/examples .whl/*.whl
du -sh .data .whl
