#!/usr/bin/env bash
# Build the book offline into book/_build/html (warnings are errors). Run from the repo root with the venv active:
#   bash book/build.sh
# The library notebooks (nbs/NN_*.ipynb) and stored experiment runs (results/**/experiment.ipynb) are copied into the
# git-ignored book/api/ by book/prepare.py and shown as stored; the paper's chapters execute (theory and splines
# through the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jupyter-book >/dev/null || { echo "jupyter-book not found: activate the venv (source .venv/bin/activate) or run 'make install'" >&2; exit 2; }

# Library notebooks without nbdev's scaffolding, with their API docs; stored runs titled from their result.json.
python book/prepare.py

# The spline fits are many tiny matrix products: BLAS threads only add overhead (and stall on a busy machine).
export PYDEVD_DISABLE_FILE_VALIDATION=1 OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Every page is read and written afresh (the chapters import book/_bookkit.py, which Sphinx does not track, and no
# stale page such as a removed chapter survives); the execution cache is kept, so cached chapters do not re-run.
rm -rf book/_build/html book/_build/.doctrees
# run from book/ so that the execution cache (execute.cache) lands in book/_build/.jupyter_cache
(cd book && jupyter-book build . -W -n --keep-going)
# MathJax must come from _static (sphinx-mathjax-offline), never from a CDN.
if grep -l -E 'cdn\.jsdelivr|mathjax@|cdnjs' book/_build/html/*.html >/dev/null 2>&1; then
  echo "error: a page loads MathJax from a CDN" >&2; exit 1
fi
test -f book/_build/html/_static/mathjax/tex-chtml.js || { echo "error: offline MathJax missing from _static" >&2; exit 1; }
echo "book: book/_build/html/index.html"
