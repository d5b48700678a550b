#!/usr/bin/env bash
# One borrowed-GPU session, start to end: GPU checks, then the benchmark with the streams grid. Everything lands in $OUT.
# Expects (carried, git-ignored): .data/fashion_mnist/*.gz (Fashion-MNIST IDX files) and .whl/fastcore-*.whl.
#   LOLIP_COMMIT=$(git rev-parse HEAD) bash bench/gpu_session.sh        # on the GPU machine, from the repository root
set -u
OUT=${OUT:-/tmp/lolip-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LOLIP_DATA=$PWD/.data PYTHONPATH=$PWD:/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv;
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/env.txt"

echo "== 1. correctness on the GPU (notebook GPU cells, separation GPU test)"
timeout 150 python3 bench/nbrun.py nbs/10_train.ipynb nbs/05_attacks.ipynb nbs/02_separation.ipynb 2>&1 | tee "$OUT/checks.log"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_separation.py -k gpu 2>&1 | tail -3 | tee -a "$OUT/checks.log"

echo "== 2. benchmark: ten methods, evaluation, the fashion grid 2 epochs with all ten jobs at once"
timeout ${BENCH_TIMEOUT:-330} python3 bench/bench.py --out "$OUT" --workers 4 --stacked --streams-epochs 2 --streams-root /tmp/streams 2>&1 | tee "$OUT/bench.log"
tar czf "$OUT/streams.tgz" -C /tmp/streams . 2>/dev/null
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,memory.used --format=csv | tee -a "$OUT/env.txt"
echo "== done $(date -u)"
