#!/usr/bin/env bash
# Fail when a notebook is not clean (nbdev_clean) or lolip_nb/ is not what nbdev_export makes of nbs/.
set -euo pipefail
bin=${1:-.venv/bin}
snapshot() { find lolip_nb nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; }
before=$(snapshot)
"$bin/nbdev_clean" --fname nbs
"$bin/nbdev_clean" --fname nbs/experiments
"$bin/nbdev_export"
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "FAIL: lolip_nb/ is out of sync with nbs/, or a notebook is not clean. Changed by nbdev_export/nbdev_clean:"
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print "  " $3}' | sort -u
  git --no-pager diff --stat -- lolip_nb nbs 2>/dev/null || true
  echo "Fix: run 'nbdev_clean && nbdev_export' and commit the result (never hand-edit lolip_nb/*.py)."
  exit 1
fi
echo "ok: lolip_nb/ matches nbs/ and every notebook is clean"
