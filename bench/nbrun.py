"""Execute notebooks' code cells in order, in one namespace per notebook, GPU-flagged cells included.

For machines without Jupyter or nbdev (a borrowed GPU box): `nbdev_test` skips `#| gpu` cells, and this runs them.
Lines that use nbdev (its showdoc import, the export footer) are dropped and cells marked `#| eval: false` skipped.

    python bench/nbrun.py nbs/10_train.ipynb nbs/05_attacks.ipynb
"""
import json, sys, time, traceback
from pathlib import Path


def run_notebook(path) -> bool:
    "Run `path`'s code cells; print and return False at the first failing cell."
    cells = [c for c in json.loads(Path(path).read_text())['cells'] if c['cell_type'] == 'code']
    ns, t0, gpu = {'__name__': '__main__'}, time.perf_counter(), 0
    for i, c in enumerate(cells):
        src = ''.join(l for l in c['source'] if not l.lstrip().startswith(('from nbdev', 'import nbdev')))
        if '#| eval: false' in src: continue
        gpu += '#| gpu' in src
        try: exec(compile(src, f'{path}[cell {i}]', 'exec'), ns)
        except Exception:
            print(f'FAIL {path} cell {i}:\n{src[:300]}\n{traceback.format_exc()}', flush=True)
            return False
    print(f'ok   {path}: {len(cells)} code cells ({gpu} GPU-only) in {time.perf_counter() - t0:.1f} s', flush=True)
    return True


if __name__ == '__main__':
    sys.exit(0 if all([run_notebook(p) for p in sys.argv[1:]]) else 1)
