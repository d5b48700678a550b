#!/usr/bin/env bash
# A short borrowed-GPU check: separation GPU = CPU, then the ten-method fashion grid on 12,800 images for 2 epochs,
# one job at a time and all ten interleaved on one GPU (execute='streams'). Everything lands in $OUT.
#   LOLIP_COMMIT=$(git rev-parse HEAD) bash bench/gpu_streams.sh        # on the GPU machine, from the repository root
set -u
OUT=${OUT:-/tmp/lolip-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LOLIP_DATA=$PWD/.data PYTHONPATH=$PWD
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } 2>&1 | tee "$OUT/env.txt"
timeout 40 python3 -m pytest -q -p no:cacheprovider tests/test_separation.py -k gpu 2>&1 | tail -4 | tee "$OUT/checks.log"
timeout ${BENCH_TIMEOUT:-140} python3 bench/bench.py --out "$OUT" --tag streams --skip-train --skip-eval --streams-epochs 2 \
  --streams-jobs 10 --streams-n-train 12800 --streams-n-test 2000 --streams-compare --streams-root /tmp/streams 2>&1 \
  | grep -v '^\[' | tee "$OUT/bench.log"
echo "== done $(date -u)"
