"Interrupted runs resume exactly, bad input is refused in one line with status 2 and no files, runners never collide."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import lolip, child_env, LOLIP, TINY

FAST = ['--autoattack', 'fast', '--n-strong', '16']  # AutoAttack's cheaper version on a few points
RUN = ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--epochs', '1', '--n-train', '64', '--n-test', '32',
       '--device', 'cpu', '--quiet', *FAST]


def _files(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


def _bad_cases(tmp: Path):
    "(name, argv, extra env) for every kind of bad input a user can type."
    (tmp / 'afile').write_text('not a folder')
    (tmp / 'broken.json').write_text('{"jobs": [')
    (tmp / 'shapeless.json').write_text('{"jobs": [{"kind": "experiment01"}]}')
    (tmp / 'badparam.json').write_text(json.dumps({'jobs': [{'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-CNN001', lr=5)}]}))
    corrupt = tmp / 'corrupt' / 'fashion_mnist'; corrupt.mkdir(parents=True)
    for name in ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'):
        src = Path('/usr/share/datasets/fashion-mnist') / f'{name}.gz'
        data = src.read_bytes() if src.exists() else b''
        (corrupt / f'{name}.gz').write_bytes(data[: len(data) // 3] if 'train-images' in name else data)  # truncated
    empty = tmp / 'empty'; empty.mkdir()
    base = ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--epochs', '1', '--n-test', '32', '--device', 'cpu']
    return [
        ('unknown dataset', ['run', '--dataset', 'imagenet21k', '--model', 'ce-tor-CNN001'], {}),
        ('unknown architecture', ['run', '--dataset', 'mnist', '--model', 'ce-tor-CNN999'], {}),
        ('unknown defense', ['run', '--dataset', 'mnist', '--model', 'madeupce-tor-CNN001'], {}),
        ('unknown hyper token', ['run', '--dataset', 'mnist', '--model', 'ce-tor-CNN001-warp9'], {}),
        ('eps zero', base + ['--eps', '0'], {}),
        ('eps above one', base + ['--eps', '2'], {}),
        ('norm 3', base + ['--norm', '3'], {}),
        ('batch size zero', base + ['--batch-size', '0'], {}),
        ('epochs zero', base + ['--epochs', '0'], {}),
        ('subset larger than the dataset', base + ['--n-train', '1000000'], {}),
        ('unknown attack', base + ['--attack', 'fgsm'], {}),
        ('unknown device', base + ['--device', 'tpu7'], {}),
        ('CUDA without a GPU', base + ['--device', 'cuda'], {}),
        ('unwritable output folder', base + ['--out', str(tmp / 'afile' / 'run')], {}),
        ('missing dataset offline', ['run', '--dataset', 'cifar10', '--model', 'ce-tor-CNN001', '--epochs', '1'], {'LOLIP_DATA': str(empty)}),
        ('truncated data file', base + ['--n-train', '64'], {'LOLIP_DATA': str(tmp / 'corrupt')}),
        ('unknown preset', ['grid', 'table9'], {}),
        ('malformed grid file', ['grid', str(tmp / 'broken.json')], {}),
        ('grid job without params', ['grid', str(tmp / 'shapeless.json')], {}),
        ('grid parameter not in the notebook', ['grid', str(tmp / 'badparam.json')], {}),
        ('grid jobs zero', ['grid', 'quick', '--jobs', '0'], {}),
        ('table of nothing', ['table', 'quick', '--root', str(empty)], {}),
        ('separation of an unknown norm', ['separation', '--dataset', 'fashion_mnist', '--norm', '7'], {}),
    ]


def test_bad_input_is_one_line_status_2_and_no_files(tmp_path):
    work = tmp_path / 'work'; work.mkdir()
    cases = _bad_cases(tmp_path)
    assert len(cases) >= 15
    before = _files(tmp_path)
    failures = []
    for name, argv, env in cases:
        r = lolip(*argv, cwd=work, env=env, timeout=120)
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        if r.returncode != 2 or len(lines) != 1 or 'error' not in lines[0] or 'Traceback' in r.stderr:
            failures.append(f'{name}: status {r.returncode}, stderr {r.stderr[-500:]!r}')
        if _files(tmp_path) != before:
            failures.append(f'{name}: left files {sorted(set(_files(tmp_path)) - set(before))}')
            before = _files(tmp_path)
    assert not failures, '\n'.join(failures)


def test_messages_name_the_problem(tmp_path):
    r = lolip('run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN999', cwd=tmp_path)
    assert 'CNN999' in r.stderr and 'CNN001' in r.stderr          # names the bad token and lists the valid ones
    r = lolip('run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--eps', '2', cwd=tmp_path)
    assert 'eps' in r.stderr and '2' in r.stderr


def _wait_for(pred, timeout, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred(): return True
        if proc is not None and proc.poll() is not None: return False
        time.sleep(0.05)
    return False


def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path):
    argv = ['run', '--dataset', 'fashion_mnist', '--model', 'advce-tor-CNN001', '--epochs', '3', '--n-train', '256',
            '--n-test', '64', '--device', 'cpu', '--quiet', *FAST]
    env = child_env({'OMP_NUM_THREADS': '1'})
    whole = lolip(*argv, '--out', tmp_path / 'whole', env={'OMP_NUM_THREADS': '1'})
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / 'killed'
    proc = subprocess.Popen([*LOLIP, *argv, '--out', str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import torch
    def after_first_epoch():
        ck = out / 'checkpoint.pt'
        if not ck.exists(): return False
        try: return torch.load(ck, weights_only=True)['epoch'] >= 1
        except Exception: return False          # never half-written, but the rename may race with our read
    assert _wait_for(after_first_epoch, 300, proc), 'no checkpoint appeared'
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert not (out / 'result.json').exists()   # a killed run never looks finished

    resumed = lolip(*argv, '--out', out, env={'OMP_NUM_THREADS': '1'})
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / 'whole' / 'result.json').read_text())
    b = json.loads((out / 'result.json').read_text())
    assert b['metrics'] == a['metrics']                                   # exactly, on CPU
    assert [h['loss'] for h in b['history']] == [h['loss'] for h in a['history']]


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    out = tmp_path / 'run'
    env = {'OMP_NUM_THREADS': '1'}
    argv = ['run', '--dataset', 'fashion_mnist', '--epochs', '2', '--n-train', '64', '--n-test', '32', '--device', 'cpu',
            '--quiet', '--out', out, *FAST]
    proc = subprocess.Popen([*LOLIP, *map(str, argv), '--model', 'ce-tor-CNN001'], env=child_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: (out / 'checkpoint.pt').exists(), 300, proc)
    proc.send_signal(signal.SIGKILL); proc.wait()
    before = (out / 'checkpoint.pt').read_bytes()
    r = lolip(*argv, '--model', 'advce-tor-CNN001', env=env)
    assert r.returncode == 2 and 'checkpoint' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (out / 'checkpoint.pt').read_bytes() == before                 # the other run's checkpoint is untouched
    assert not (out / 'result.json').exists()


def test_killed_grid_redoes_only_unfinished_jobs(tmp_path, tiny_grid):
    grid = tiny_grid(['ce-tor-CNN001', 'tulipce-tor-CNN001', 'advce-tor-CNN001'])
    root = tmp_path / 'results'
    proc = subprocess.Popen([*LOLIP, 'grid', str(grid), '--root', str(root), '--execute', 'process', '--device', 'cpu'],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    assert _wait_for(lambda: len(list(root.glob('tiny/*/result.json'))) >= 1, 300, proc)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    done = {p.parent.name for p in root.glob('tiny/*/result.json')}
    assert 1 <= len(done) < 3
    r = lolip('grid', grid, '--root', root, '--execute', 'process', '--device', 'cpu')
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'{3 - len(done)} ran, {len(done)} skipped' in r.stdout, r.stdout
    assert len(list(root.glob('tiny/*/result.json'))) == 3


def test_two_runners_on_one_grid_never_run_a_job_twice(tmp_path, tiny_grid):
    grid = tiny_grid(['ce-tor-CNN001', 'tulipce-tor-CNN001', 'advce-tor-CNN001', 'stradesce-tor-CNN001'])
    root = tmp_path / 'results'
    cmd = [*LOLIP, 'grid', str(grid), '--root', str(root), '--execute', 'process', '--device', 'cpu']
    env = child_env({'OMP_NUM_THREADS': '1'})
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ran = sum(int(o.split('summary: ')[1].split(' ran')[0]) for o in outs)
    assert ran == 4, outs                                                    # each job ran exactly once in total
    results = list(root.glob('tiny/*/result.json'))
    assert len(results) == 4 and all(json.loads(p.read_text())['metrics'] for p in results)
    assert not list(root.rglob('*.tmp'))                                    # no half-written files
