"Interrupted runs resume exactly, bad input is refused in one line with status 2 and no files, runners never collide."
import errno, fcntl, gzip, json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest

from conftest import lolip, child_env, LOLIP, TINY

FAST = ['--autoattack', 'fast', '--n-strong', '16']  # AutoAttack's cheaper version on a few points
RUN = ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--epochs', '1', '--n-train', '64', '--n-test', '32',
       '--device', 'cpu', '--quiet', *FAST]
# lr 3e38 without momentum: the one step of 64 images (one batch) leaves weights that are infinite
HUGE_LR = 'ce-tor-CNN001-lr300000000000000000000000000000000000000.0-mo0'


def _run_argv(model: str, *extra) -> list:
    "RUN with another model name and more flags."
    argv = list(RUN); argv[argv.index('--model') + 1] = model
    return [*argv, *map(str, extra)]


def _files(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))


def _idx(arr) -> bytes:
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b''.join(d.to_bytes(4, 'big') for d in arr.shape) + arr.tobytes()


IDX = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')


def _data_copy(folder: Path, change=None, only=IDX):
    "A LOLIP_DATA folder with a copy of Fashion-MNIST's files in `only`, `change(name, gz bytes)` applied to each."
    (folder / 'fashion_mnist').mkdir(parents=True)
    for name in only:
        src = Path('/usr/share/datasets/fashion-mnist') / f'{name}.gz'
        data = src.read_bytes() if src.exists() else b''
        (folder / 'fashion_mnist' / f'{name}.gz').write_bytes(change(name, data) if change else data)
    return folder


def _grid_file(tmp: Path, name: str, spec) -> str:
    path = tmp / f'{name}.json'
    path.write_bytes(spec) if isinstance(spec, bytes) else path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return str(path)


def _result(config: dict, metrics: dict) -> str:
    return json.dumps({'name': 'x', 'config': config, 'metrics': metrics})


def _bad_cases(tmp: Path):
    "(name, argv, extra env) for every kind of bad input a user, or a hostile grid file, can give."
    import torch
    from lolip_nb.config import parse_model_name
    (tmp / 'afile').write_text('not a folder')
    (tmp / 'broken.json').write_text('{"jobs": [')
    (tmp / 'shapeless.json').write_text('{"jobs": [{"kind": "experiment01"}]}')
    (tmp / 'badparam.json').write_text(json.dumps({'jobs': [{'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-CNN001', lr=5)}]}))
    _data_copy(tmp / 'corrupt', lambda n, d: d[: len(d) // 3] if 'train-images' in n else d)                 # truncated
    _data_copy(tmp / 'badbody', lambda n, d: d[:10] + bytes(b ^ 0x55 for b in d[10:-8]) + d[-8:] if 'train-images' in n else d)
    _data_copy(tmp / 'noitems', lambda n, d: gzip.compress(_idx(np.zeros((0, 28, 28)) if 'images' in n else [])) if 'train' in n else d)
    _data_copy(tmp / 'nolabels', only=IDX[:1] + IDX[2:])                                                    # one file missing
    _data_copy(tmp / 'dirfile', only=IDX[1:]); (tmp / 'dirfile' / 'fashion_mnist' / 'train-images-idx3-ubyte').mkdir()
    empty = tmp / 'empty'; empty.mkdir()
    sep = lambda **p: {'kind': 'separation', 'params': p}
    exp = lambda **p: {'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-CNN001', **p)}
    grids = {
        'name-up': {'name': '../../../x', 'jobs': [sep(dataset='mnist')]},
        'name-absolute': {'name': str(tmp / 'elsewhere'), 'jobs': [sep(dataset='mnist')]},
        'name-empty': {'name': '', 'jobs': [sep(dataset='mnist')]},
        'name-newline': {'name': 'a\nb', 'jobs': [sep(dataset='mnist')]},
        'norm-path': {'name': 'g', 'jobs': [sep(dataset='mnist', norm='../../x')]},
        'dataset-path': {'name': 'g', 'jobs': [sep(dataset='../../x', norm='inf')]},
        'sep-unknown-dataset': {'name': 'g', 'jobs': [sep(dataset='imagenet21k', norm='inf')]},
        'sep-negative-subset': {'name': 'g', 'jobs': [sep(dataset='mnist', norm='inf', subset=-5)]},
        'sep-zero-subset': {'name': 'g', 'jobs': [sep(dataset='mnist', norm='inf', subset=0)]},
        'sep-no-dataset': {'name': 'g', 'jobs': [sep(norm='inf')]},
        'exp-no-model': {'name': 'g', 'jobs': [{'kind': 'experiment01', 'params': {'dataset': 'mnist'}}]},
        'exp-huge-seed': {'name': 'g', 'jobs': [exp(random_seed=2**64)]},
        'exp-n-train-too-large': {'name': 'g', 'jobs': [exp(n_train=60_001)]},
        'duplicates': {'name': 'g', 'jobs': [exp(), exp(autoattack='fast')]},
        'duplicates-linf': {'name': 'g', 'jobs': [sep(dataset='mnist', norm='linf'), sep(dataset='mnist', norm='Linf')]},
        'kind-not-a-string': {'name': 'g', 'jobs': [{'kind': ['experiment01'], 'params': {}}]},
    }
    grids = {k: _grid_file(tmp, k, v) for k, v in grids.items()}
    (tmp / 'unrelated').mkdir(); (tmp / 'linked').mkdir(); (tmp / 'linked' / 'g').symlink_to(tmp / 'unrelated')
    grids['link-out'] = _grid_file(tmp, 'link-out', {'name': 'g', 'jobs': [exp()]})
    grids['not-utf8'] = _grid_file(tmp, 'not-utf8', b'{"name": "g\xff", "jobs": []}')
    grids['nested'] = _grid_file(tmp, 'nested', '[' * 100_000 + ']' * 100_000)
    grids['huge-number'] = _grid_file(tmp, 'huge-number', '{"jobs": [' + '9' * 5000 + ']}')
    good = parse_model_name('ce-tor-CNN001', 'fashion_mnist', eps=0.1, epochs=1).to_dict()
    for group, text in (('nocfg', json.dumps({'metrics': {'test_acc': 0.5}})), ('strmetric', _result(good, {'test_acc': 'high'})),
                        ('badcfg', _result({'dataset': 'mnist'}, {'test_acc': 0.5})), ('good', _result(good, {'test_acc': 0.5}))):
        (tmp / 'tables' / group / 'a').mkdir(parents=True); (tmp / 'tables' / group / 'a' / 'result.json').write_text(text)
    cks = {'list': [1, 2, 3], 'nokeys': {'model': {}}, 'shapes': None}
    ck_argv = ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--epochs', '2', '--n-train', '64', '--n-test', '32',
               '--device', 'cpu', '--quiet']
    from lolip_nb.experiment import experiment_config
    from lolip_nb.config import config_hash
    ck_cfg = experiment_config('ce-tor-CNN001', 'fashion_mnist', epochs=2, n_train=64, n_test=32)
    for k, v in cks.items():
        (tmp / 'ck' / k).mkdir(parents=True)
        if v is None: v = {'model': {'0.weight': torch.zeros(3)}, 'optimizer': {}, 'scheduler': {}, 'rng': {}, 'epoch': 1,
                           'history': [{}], 'config_hash': config_hash(ck_cfg), 'config': ck_cfg.to_dict()}
        torch.save(v, tmp / 'ck' / k / 'checkpoint.pt')
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
        # 2: a diverged run (one step of lr 3e38 leaves inf weights) writes nothing
        ('non-finite weights', ['run', '--dataset', 'fashion_mnist', '--model', HUGE_LR, '--epochs', '1', '--n-train', '64',
                                '--n-test', '32', '--device', 'cpu', '--quiet', '--out', str(tmp / 'diverged')], {}),
        # 4: folder names from a grid file
        *[(f'grid {k}', ['grid', grids[k], '--root', str(tmp / 'root')], {})
          for k in ('name-up', 'name-absolute', 'name-empty', 'name-newline', 'norm-path', 'dataset-path')],
        ('grid whose folder is a link out of --root', ['grid', grids['link-out'], '--root', str(tmp / 'linked')], {}),
        # 6: grid validation before any folder is made
        *[(f'grid {k}', ['grid', grids[k], '--root', str(tmp / 'root')], {})
          for k in ('sep-unknown-dataset', 'sep-negative-subset', 'sep-zero-subset', 'sep-no-dataset', 'exp-no-model',
                    'exp-huge-seed', 'exp-n-train-too-large', 'duplicates', 'duplicates-linf', 'kind-not-a-string')],
        # 7: what used to end in a traceback
        ('seed 2**64', base + ['--random_seed', str(2**64)], {}),
        ('device meta', base + ['--device', 'meta'], {}),
        ('device mps', base + ['--device', 'mps'], {}),
        ('gzip with a corrupt body', base + ['--n-train', '64'], {'LOLIP_DATA': str(tmp / 'badbody')}),
        ('IDX file with 0 images', base + ['--n-train', '64'], {'LOLIP_DATA': str(tmp / 'noitems')}),
        ('grid file not UTF-8', ['grid', grids['not-utf8'], '--root', str(tmp / 'root')], {}),
        ('grid file nested 100,000 deep', ['grid', grids['nested'], '--root', str(tmp / 'root')], {}),
        ('grid file with a 5,000-digit number', ['grid', grids['huge-number'], '--root', str(tmp / 'root')], {}),
        ('ResNet50 with a last batch of one image', ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-ResNet50', '--epochs', '1',
                                                    '--n-train', '129', '--n-test', '32', '--device', 'cpu'], {}),
        ('table of a result without config', ['table', 'nocfg', '--root', str(tmp / 'tables')], {}),
        ('table of a result with string metrics', ['table', 'strmetric', '--root', str(tmp / 'tables')], {}),
        ('table of a result with a broken config', ['table', 'badcfg', '--root', str(tmp / 'tables')], {}),
        ('table --out unwritable', ['table', 'good', '--root', str(tmp / 'tables'), '--out', str(tmp / 'afile' / 'T')], {}),
        ('separation without --dataset', ['separation'], {}),
        ('separation with an unknown flag', ['separation', '--dataset', 'fashion_mnist', '--bogus', '1'], {}),
        ('separation --k 0', ['separation', '--dataset', 'fashion_mnist', '--k', '0'], {}),
        ('separation --k -1', ['separation', '--dataset', 'fashion_mnist', '--k', '-1'], {}),
        ('separation --drop -1', ['separation', '--dataset', 'fashion_mnist', '--drop', '-1'], {}),
        ('separation --out unwritable', ['separation', '--dataset', 'fashion_mnist', '--out', str(tmp / 'afile' / 'sep')], {}),
        *[(f'checkpoint that loads but is not ours ({k})', ck_argv + ['--out', str(tmp / 'ck' / k)], {}) for k in cks],
        # 11: an incomplete copy of the data is refused, never replaced by another copy
        ('LOLIP_DATA copy without a labels file', base + ['--n-train', '64'], {'LOLIP_DATA': str(tmp / 'nolabels')}),
        ('LOLIP_DATA copy with a folder for a file', base + ['--n-train', '64'], {'LOLIP_DATA': str(tmp / 'dirfile')}),
    ]


def test_bad_input_is_one_line_status_2_and_no_files(tmp_path):
    work = tmp_path / 'work'; work.mkdir()
    cases = _bad_cases(tmp_path)
    assert len(cases) == 65
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


def test_result_of_another_configuration_in_the_folder_is_refused(tmp_path):
    "Wrong result 1: a folder's finished result is never returned for another configuration, --force or not."
    out = tmp_path / 'd'
    first = lolip(*_run_argv('ce-tor-CNN001', '--out', out))
    assert first.returncode == 0, first.stderr
    before = (out / 'result.json').read_bytes()
    for extra in ([], ['--force']):
        r = lolip(*_run_argv('advce-tor-CNN001', '--eps', '0.2', '--out', out, *extra))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert 'holds the result of another configuration (ce-tor-CNN001' in lines[0] and 'not of advce-tor-CNN001' in lines[0]
        assert r.stdout == ''                                                       # no metrics printed
    assert (out / 'result.json').read_bytes() == before
    assert sorted(os.listdir(out)) == ['model.safetensors', 'result.json', 'run.log']   # the first run's files, untouched


def test_diverged_run_is_an_error_not_a_result(tmp_path):
    "Wrong result 2: weights that become infinite end the run with one line, and no result.json is written."
    r = lolip(*_run_argv(HUGE_LR, '--out', tmp_path / 'run'))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and 'the weights are not finite after epoch 1' in lines[0], r.stderr
    assert 'lower the learning rate (lr=3e+38)' in lines[0] and not (tmp_path / 'run').exists()


def test_run_refuses_a_folder_another_run_holds(tmp_path):
    "5: lolip run takes the job lock, so it never trains into a folder that another run or a grid job is using."
    out = tmp_path / 'busy'; out.mkdir()
    fd = os.open(out / '.lock', os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)                                              # what a running job holds
    try: r = lolip(*_run_argv('ce-tor-CNN001', '--out', out))
    finally: os.close(fd)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and f'{out} is in use by another run' in lines[0], r.stderr
    assert os.listdir(out) == ['.lock']                                         # nothing trained, nothing written


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    "8: torch.save failing as on a full disk (its OSError, then 'unexpected pos') at epoch 2: one line, epoch 1 kept."
    import torch
    out = tmp_path / 'run'
    argv = [*_run_argv('ce-tor-CNN001', '--epochs', 2, '--out', out)]
    code = '''import errno, sys, torch
real, calls = torch.save, []
def full(obj, f, *a, **kw):
    calls.append(1)
    if len(calls) == 1: return real(obj, f, *a, **kw)
    f.write(bytes(100_000))
    try: raise OSError(errno.ENOSPC, 'No space left on device')
    except OSError: raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 100064 vs 99968')
torch.save = full
from lolip_nb.cli import main
sys.exit(main(sys.argv[1:]))
'''
    r = subprocess.run([sys.executable, '-c', code, *argv], env=child_env(), capture_output=True, text=True, timeout=600)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'no space left on device' in lines[0] and 'the last checkpoint (epoch 1)' in lines[0], lines[0]
    assert sorted(os.listdir(out)) == ['checkpoint.pt', 'run.log']              # no temporary file, no result, no weights
    assert torch.load(out / 'checkpoint.pt', weights_only=True)['epoch'] == 1
    assert [l.split(':')[0] for l in (out / 'run.log').read_text().splitlines()] == ['epoch 1/2']
    again = lolip(*argv)                                                        # space freed: the same command resumes
    assert again.returncode == 0, again.stderr
    assert [h['epoch'] for h in json.loads((out / 'result.json').read_text())['history']] == [1, 2]


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
    stale = out / '.checkpoint.pt.k1ll3d0x.tmp'
    stale.write_bytes(bytes(8 << 20))           # what a kill in the middle of writing a checkpoint leaves (10)

    resumed = lolip(*argv, '--out', out, env={'OMP_NUM_THREADS': '1'})
    assert resumed.returncode == 0, resumed.stderr
    assert not stale.exists() and not list(out.glob('.*.tmp'))               # removed when the job started again
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
    from lolip_nb.runner import grid_jobs, job_dir
    name, jobs = grid_jobs(str(grid))
    unfinished = [job_dir(j, root, name) for j in jobs if job_dir(j, root, name).name not in done]
    for f in unfinished:                        # what a kill in the middle of writing a checkpoint leaves
        f.mkdir(exist_ok=True); (f / '.checkpoint.pt.k1ll3d0x.tmp').write_bytes(bytes(1 << 20))
    r = lolip('grid', grid, '--root', root, '--execute', 'process', '--device', 'cpu')
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list(root.rglob('*.tmp'))        # removed by the runner that took the job's lock (10)
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


def _job_process(folder: Path):
    "PID of a process running the job whose result folder is `folder`, if any."
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: cmd = (d / 'cmdline').read_bytes().decode(errors='replace')
        except OSError: continue
        if '_main_job' in cmd and str(folder) in cmd: return int(d.name)
    return None


def _checkpoint_epoch(folder: Path) -> int:
    import torch
    try: return torch.load(folder / 'checkpoint.pt', weights_only=True)['epoch']
    except Exception: return 0                  # not there yet, or being renamed into place as we read


LONG = dict(epochs=200, n_train=256, n_test=32)  # minutes of training: a runner that waited for it would be seen waiting


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_lolip_run_in_one_resumable_line(tmp_path, sig):
    "9: what kill, timeout and a closed terminal send: one line saying the run is resumable; the checkpoint stays."
    out = tmp_path / 'run'
    argv = _run_argv('advce-tor-CNN001', '--epochs', LONG['epochs'], '--n-train', LONG['n_train'], '--out', out)
    proc = subprocess.Popen([*LOLIP, *argv], env=child_env({'OMP_NUM_THREADS': '1'}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _checkpoint_epoch(out) >= 1, 300, proc), 'no checkpoint appeared'
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
    finally: proc.kill()
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + sig and len(lines) == 1, err
    assert lines[0].startswith(f'lolip: stopped by {sig.name}; the run is resumable: run the same command again'), lines[0]
    assert set(os.listdir(out)) - {'run.log'} == {'checkpoint.pt'}           # no result, lock or temporary file
    assert 1 <= _checkpoint_epoch(out) < LONG['epochs']


@pytest.mark.parametrize('sig, execute', [(signal.SIGINT, 'process'), (signal.SIGTERM, 'streams')])
def test_signal_to_the_grid_runner_alone_stops_its_jobs_now(tmp_path, tiny_grid, sig, execute):
    "9 (and 5): a signal to the runner's PID alone stops the running job at once, says how to resume; lolip run keeps out."
    grid = tiny_grid(['advce-tor-CNN001'])
    spec = json.loads(grid.read_text()); spec['jobs'][0]['params'].update(LONG); grid.write_text(json.dumps(spec))
    root = tmp_path / 'results'
    proc = subprocess.Popen([*LOLIP, 'grid', str(grid), '--root', str(root), '--execute', execute, '--device', 'cpu'],
                            env=child_env({'OMP_NUM_THREADS': '1'}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: any(_checkpoint_epoch(f) >= 1 for f in root.glob('tiny/*')), 300, proc), 'no checkpoint'
        folder = next(root.glob('tiny/*')).resolve()
        busy = lolip(*_run_argv('advce-tor-CNN001', '--out', folder))               # the grid job holds this folder
        assert busy.returncode == 2 and f'{folder} is in use by another run' in busy.stderr, busy.stderr
        proc.send_signal(sig)                                                     # to the runner alone, not its group
        out, err = proc.communicate(timeout=120)
    finally: proc.kill()
    lines = err.strip().splitlines()
    assert proc.returncode == 128 + sig and len(lines) == 1, out + err
    assert f'stopped by {sig.name}; its running jobs were stopped' in lines[0] and 'run the same command again to resume' in lines[0]
    assert 'summary' not in out and _job_process(folder) is None                    # stopped, not waited for
    assert not (folder / 'result.json').exists() and not (folder / '.lock').exists()
    assert 1 <= _checkpoint_epoch(folder) < LONG['epochs']                          # resumable from there
