#!/usr/bin/env bash
# A short borrowed-GPU check: separation GPU = CPU, then the ten-method fashion grid (original forms) on all 60,000
# training images for 2 epochs, all ten interleaved on one GPU (execute='streams'): the grid epoch measured directly,
# no scaling (N_TRAIN=12800 COMPARE=--streams-compare: the earlier, scaled measurement with the one-at-a-time ratio).
# Evaluation on 500 test points keeps it short. Everything lands in $OUT.
#   LOLIP_COMMIT=$(git rev-parse HEAD) bash bench/gpu_streams.sh        # on the GPU machine, from the repository root
set -u
OUT=${OUT:-/tmp/lolip-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LOLIP_DATA=$PWD/.data PYTHONPATH=$PWD:$PWD/.whl/site  # .whl: scripts/gpu_prepare.sh
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } 2>&1 | tee "$OUT/env.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_separation.py tests/test_graphs.py -k "gpu or graph or dropout" 2>&1 | tail -6 | tee "$OUT/checks.log"
timeout ${BENCH_TIMEOUT:-240} python3 bench/bench.py --out "$OUT" --tag streams --skip-train --skip-eval --streams-epochs 2 \
  --streams-jobs 10 --streams-n-train ${N_TRAIN:-60000} --streams-n-test 500 --streams-original-only ${COMPARE:-} \
  --streams-root /tmp/streams 2>&1 \
  | grep -v '^\[' | tee "$OUT/bench.log"
echo "== done $(date -u)"
