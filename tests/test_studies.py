"The study notebooks run end to end through papermill and store what the book reads."
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_llr_study_notebook_writes_its_json(tmp_path):
    out = tmp_path / 'llr'
    r = subprocess.run([sys.executable, '-m', 'papermill', str(REPO / 'nbs/experiments/llr_study.ipynb'),
                        str(tmp_path / 'study.ipynb'), '-k', 'python3', '--no-progress-bar',
                        '-p', 'n_train', '64', '-p', 'n_test', '32', '-p', 'variants', 'quick,eps',
                        '-p', 'out_dir', str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    study = json.loads((out / 'llr_study.json').read_text())
    assert set(study['init_terms']) == {'0.01', '0.03', '0.1'}
    assert len(study['runs']) == 2 and all(len(v['history']) == 5 for v in study['runs'].values())
    h = next(iter(study['runs'].values()))['history'][0]
    assert {'ce', 'gamma', 'lin', 'loss', 'train_acc', 'test_acc', 'top_class_share'} <= set(h)
    assert abs(h['loss'] - (h['ce'] + 4 * h['gamma'] + 3 * h['lin'])) < 1e-4 * max(1.0, h['loss'])
    assert study['provenance']['commit'] and study['data']['n_train'] == 64
