#!/usr/bin/env bash
# On a borrowed GPU machine, from the repository root: run the unfinished jobs of the `fashion` preset that fit in
# $BUDGET (default 7m), whole, longest first (lolip grid --time-budget), and leave their result folders in
# $OUT/results/fashion/, the layout of results/fashion/ here (weights left out: large and rebuilt by `lolip run`).
# With SPLIT=1 (the default) a job longer than the budget starts when nothing else fits and pauses between epochs
# before the budget ends (--split); its checkpoint (about 10 MB) comes back in $OUT/results/fashion/<job>/: put it
# into results/fashion/<job>/ here (git ignores it) and carry that path in the next call of the same session. Needs what scripts/gpu_prepare.sh put into .data and .whl (carry both). Before the grid,
# tests/test_graphs.py checks the CUDA-graph training on the device (CHECKS=0 skips it); if it fails, LOLIP_GRAPHS=0.
#   LOLIP_COMMIT=$(git rev-parse HEAD) BUDGET=7m bash scripts/gpu_fashion.sh
set -u
PY=${PYTHON:-python3}; DEVICE=${DEVICE:-cuda}  # DEVICE=cpu PYTHON=.venv/bin/python: a dry run here
OUT=${OUT:-/tmp/lolip-gpu-out}; mkdir -p "$OUT"
export DEVICE PYTHONUNBUFFERED=1 LOLIP_DATA=$PWD/.data PYTHONPATH=$PWD:$PWD/.whl/site
[ -d .data/fashion_mnist ] && [ -d .whl/site/pyautoattack ] || { echo "run scripts/gpu_prepare.sh first and carry .data and .whl" >&2; exit 2; }
$PY - <<'PY' || exit 3
import importlib, sys
missing = [m for m in ('torch', 'numpy', 'scipy', 'pandas', 'matplotlib', 'tqdm', 'tabulate', 'safetensors', 'pyautoattack')
           if importlib.util.find_spec(m) is None]
if missing: sys.exit(f"the GPU machine lacks {missing}: add their wheels to .whl (scripts/gpu_prepare.sh)")
import os, torch
if os.environ.get('DEVICE', 'cuda') != 'cpu': assert torch.cuda.is_available(), 'no CUDA device'
print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')
PY
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } > "$OUT/env.txt" 2>&1
# first the CUDA-graph checks (a minute at most); if they fail, the grid runs every step eagerly: slower, still right
T0=$(date +%s)
if [ "$DEVICE" != cpu ] && [ "${CHECKS:-1}" = 1 ]; then
  timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_graphs.py 2>&1 | tail -15 > "$OUT/checks.log"
  grep -q ' passed' "$OUT/checks.log" && ! grep -qE 'failed|error' "$OUT/checks.log" || { export LOLIP_GRAPHS=0; echo "graph checks failed: LOLIP_GRAPHS=0" | tee -a "$OUT/checks.log"; }
  cat "$OUT/checks.log"
fi
SPLIT_FLAG=$([ "${SPLIT:-1}" = 1 ] && echo --split)
timeout $(( ${TIMEOUT:-590} - ($(date +%s) - T0) )) $PY -m lolip_nb.cli grid fashion --time-budget "${BUDGET:-7m}" $SPLIT_FLAG \
  --execute process --device $DEVICE --root results 2>&1 | tee "$OUT/grid.log"
mkdir -p "$OUT/results"
# finished jobs without their checkpoint; an unfinished (paused) job with it, to be resumed
for d in results/fashion/*/; do [ -f "$d/result.json" ] && echo "$d/checkpoint.pt"; done | sed 's|//|/|' > /tmp/lolip-skip
tar cf - --exclude='*.safetensors' --exclude='.lock' --exclude-from=/tmp/lolip-skip results/fashion 2>/dev/null | tar xf - -C "$OUT"
echo "== done $(date -u)"
