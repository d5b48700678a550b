"""`lolip grid --time-budget` from the command line: a budget too small for any job starts none and says why."""
import json
import subprocess
import sys
from pathlib import Path


def test_budget_too_small_starts_nothing(tmp_path):
    grid = tmp_path / 'tiny.json'
    grid.write_text(json.dumps(dict(name='tiny', jobs=[dict(kind='experiment01', params=dict(
        model='ce-tor-CNN001-adam-lrem3', dataset='fashion_mnist', eps=0.1, epochs=1, n_train=64, n_test=32, autoattack=None))])))
    p = subprocess.run([sys.executable, '-m', 'lolip_nb.cli', 'grid', str(grid), '--time-budget', '2s', '--root', str(tmp_path / 'r'),
                        '--execute', 'process', '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert '[calibrate] fashion_mnist/CNN001/ce/original/bs64/fp32/noaug' in p.stdout
    assert '[ pending] ce-tor-CNN001-adam-lrem3' in p.stdout and 'needs' in p.stdout, p.stdout
    assert 'summary: 0 ran' in p.stdout
    assert not list((tmp_path / 'r').rglob('result.json'))
    journal = [json.loads(l) for l in (tmp_path / 'r' / 'tiny' / 'budget.jsonl').read_text().splitlines()]
    assert [r['decision'] for r in journal] == ['not started'] and journal[0]['estimate_s'] > 2


def test_budget_refuses_bad_flags(tmp_path):
    p = subprocess.run([sys.executable, '-m', 'lolip_nb.cli', 'grid', 'quick', '--time-budget', '8 minutes', '--root', str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and 'a time budget must be a positive duration like 480, 90s, 8m or 1.5h' in p.stderr
    assert not any(tmp_path.iterdir())


def test_a_deadline_pauses_a_job_that_then_resumes(tmp_path):
    # a deadline already past: the first epoch runs (its length is unknown), the job pauses before the second with its
    # checkpoint, the grid says so and exits 0; without the deadline the same command finishes it from epoch 1
    import os
    grid = tmp_path / 'two.json'
    grid.write_text(json.dumps(dict(name='two', jobs=[dict(kind='experiment01', params=dict(
        model='ce-tor-CNN001-adam-lrem3', dataset='fashion_mnist', eps=0.1, epochs=2, n_train=64, n_test=32, autoattack=None))])))
    cmd = [sys.executable, '-m', 'lolip_nb.cli', 'grid', str(grid), '--root', str(tmp_path / 'r'), '--execute', 'process',
           '--device', 'cpu']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, LOLIP_STOP_AT='1'))
    assert p.returncode == 0, p.stdout + p.stderr
    assert '1 paused at the deadline' in p.stdout and 'paused after epoch 1/2' in p.stdout, p.stdout
    folder = next((tmp_path / 'r' / 'two').iterdir())
    assert (folder / 'checkpoint.pt').exists() and not (folder / 'result.json').exists()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and 'summary: 1 ran' in p.stdout, p.stdout + p.stderr
    assert 'resuming after epoch 1/2' in (folder / 'run.log').read_text()
    assert json.loads((folder / 'result.json').read_text())['metrics']['test_acc'] >= 0


def test_split_needs_a_budget(tmp_path):
    p = subprocess.run([sys.executable, '-m', 'lolip_nb.cli', 'grid', 'quick', '--split', '--root', str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and '--split is for --time-budget' in p.stderr
    assert not any(tmp_path.iterdir())
