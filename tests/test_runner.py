"Papermill really executes the experiment notebook; results are stored, skipped on rerun, failures reported, tables rendered."
import json, os

import pytest

from conftest import lolip, TINY


def test_papermill_grid_runs_skips_reports_and_tabulates(tmp_path, tiny_grid):
    failing = {'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-MLP', dataset='restricted_imagenet', eps=0.005)}
    grid = tiny_grid(['ce-tor-CNN001', 'strades6ce-tor-CNN001'], extra=[failing])
    root = tmp_path / 'results'

    first = lolip('grid', grid, '--root', root, '--jobs', 2, '--execute', 'papermill', '--device', 'cpu')
    assert first.returncode == 1, first.stdout + first.stderr           # one job failed, so the grid exits non-zero
    assert 'summary: 2 ran, 0 skipped (already complete), 0 running elsewhere, 1 failed' in first.stdout
    fail_line = [l for l in first.stdout.splitlines() if l.strip().startswith('failed:')]
    assert len(fail_line) == 1 and 'restricted_imagenet' in fail_line[0] and 'cell' in fail_line[0], first.stdout

    results = sorted(root.glob('tiny/*/result.json'))
    assert len(results) == 2
    for path in results:
        res = json.loads(path.read_text())
        assert set(res) >= {'name', 'config', 'config_hash', 'metrics', 'history', 'timings', 'dataset_source', 'provenance'}
        assert set(res['metrics']) >= {'train_acc', 'test_acc', 'adv_train_acc', 'adv_test_acc', 'train_lip', 'test_lip',
                                       'gap_acc', 'gap_adv_acc'}
        assert set(res['provenance']) >= {'command', 'commit', 'lolip_nb', 'torch', 'device', 'date'}
        assert res['provenance']['command'].startswith(f'lolip grid {grid}')       # the command that made it
        assert res['config']['n_train'] == 96 and len(res['history']) == 1
        nb = json.loads((path.parent / 'experiment.ipynb').read_text())    # the executed notebook is kept as the lab record
        params = [c for c in nb['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])]
        assert params and 'n_train = 96' in ''.join(params[0]['source'])
        assert any(o.get('output_type') in ('execute_result', 'display_data') for c in nb['cells'] for o in c.get('outputs', []))
    failed_nb = next(root.glob('tiny/ce-tor-MLP*/experiment.ipynb'))
    assert any(o.get('output_type') == 'error' for c in json.loads(failed_nb.read_text())['cells'] for o in c.get('outputs', []))
    assert not list(root.glob('tiny/ce-tor-MLP*/result.json'))          # a failed run leaves no result

    again = lolip('grid', grid, '--root', root, '--jobs', 2, '--execute', 'papermill', '--device', 'cpu')
    assert 'summary: 0 ran, 2 skipped (already complete), 0 running elsewhere, 1 failed' in again.stdout, again.stdout

    before = {p: json.loads(p.read_text())['provenance']['date'] for p in results}
    forced = lolip('grid', grid, '--root', root, '--jobs', 2, '--execute', 'papermill', '--device', 'cpu', '--force')
    assert 'summary: 2 ran, 0 skipped' in forced.stdout, forced.stdout                 # --force recomputes
    for p in results:
        res = json.loads(p.read_text())
        assert res['provenance']['date'] >= before[p] and '--force' in res['provenance']['command']

    table = lolip('table', 'tiny', '--root', root, '--out', tmp_path / 'T')
    assert table.returncode == 0, table.stderr
    assert '| Natural' in table.stdout and '| TRADES(6)' in table.stdout and 'adv test acc' in table.stdout
    assert (tmp_path / 'T.tex').read_text().lstrip().startswith('\\begin{tabular}')
    assert '<table' in (tmp_path / 'T.html').read_text()


def test_process_backend_gives_the_same_metrics_as_papermill(tmp_path, tiny_grid):
    grid = tiny_grid(['advce-tor-CNN001'])
    for backend in ('papermill', 'process'):
        r = lolip('grid', grid, '--root', tmp_path / backend, '--execute', backend, '--device', 'cpu')
        assert r.returncode == 0, r.stdout + r.stderr
    a, b = (json.loads(next((tmp_path / k).glob('tiny/*/result.json')).read_text()) for k in ('papermill', 'process'))
    assert a['config_hash'] == b['config_hash']
    assert a['metrics'] == pytest.approx(b['metrics'], rel=1e-6, abs=1e-9)


def test_streams_execution_runs_jobs_in_one_process_and_reports_failures(tmp_path, tiny_grid):
    "execute='streams' (jobs as threads of the runner, one CUDA stream each on a GPU) stores the same results as 'process'."
    failing = {'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-MLP', dataset='restricted_imagenet', eps=0.005)}
    grid = tiny_grid(['ce-tor-CNN001', 'advce-tor-CNN001'], extra=[failing])
    root = tmp_path / 'streams'
    r = lolip('grid', grid, '--root', root, '--jobs', 3, '--execute', 'streams', '--device', 'cpu')
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'summary: 2 ran, 0 skipped (already complete), 0 running elsewhere, 1 failed' in r.stdout, r.stdout
    fail_line = [l for l in r.stdout.splitlines() if l.strip().startswith('failed:')]
    assert len(fail_line) == 1 and 'DatasetUnavailable' in fail_line[0] and 'restricted_imagenet' in fail_line[0], r.stdout
    assert 'Traceback' in next(root.glob('tiny/ce-tor-MLP*/run.log')).read_text()
    assert not list(root.glob('tiny/ce-tor-MLP*/result.json'))
    results = sorted(root.glob('tiny/*/result.json'))
    assert len(results) == 2
    for p in results:
        res = json.loads(p.read_text())
        assert res['provenance']['command'].startswith(f'lolip grid {grid}') and len(res['history']) == 1
        assert res['execution'] == {'device': 'cpu', 'cuda_graphs': False, 'tf32': False}
    again = lolip('grid', grid, '--root', root, '--jobs', 3, '--execute', 'streams', '--device', 'cpu')
    assert 'summary: 0 ran, 2 skipped (already complete), 0 running elsewhere, 1 failed' in again.stdout, again.stdout

    # two jobs interleaved step by step give, bit for bit, what each gives in its own process: each job draws from its
    # own random state (dropout, random starts), not from one generator shared with the job beside it. One thread per
    # job in both modes (process gives each job cpu_count // jobs threads), as thread counts change float rounding.
    two = tiny_grid(['ce-tor-CNN001', 'advce-tor-CNN001'], name='two')
    for mode, jobs in (('streams', 2), ('process', os.cpu_count())):
        out = lolip('grid', two, '--root', tmp_path / mode, '--execute', mode, '--jobs', jobs, '--device', 'cpu',
                    env={'OMP_NUM_THREADS': '1'})
        assert out.returncode == 0 and 'summary: 2 ran' in out.stdout, out.stdout + out.stderr
    runs = {k: {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / k).glob('two/*/result.json')}
            for k in ('streams', 'process')}
    assert len(runs['streams']) == 2 and runs['streams'].keys() == runs['process'].keys()
    for name, a in runs['streams'].items():
        b = runs['process'][name]
        assert a['metrics'] == b['metrics'] and a['history'][0]['loss'] == b['history'][0]['loss'], name
