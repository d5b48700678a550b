"The Ray backend: a real local cluster on loopback gives the local runner's results; a killed worker's job is retried and resumes."
import json, os, signal, socket, subprocess, time
from pathlib import Path

import pytest

from conftest import lolip, child_env, LOLIP, BIN

ray = pytest.importorskip('ray')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "A real Ray head node on 127.0.0.1 with 2 CPUs, stopped after the module."
    port = _free_port()
    tmp = tmp_path_factory.mktemp('ray')
    env = child_env({'RAY_USAGE_STATS_ENABLED': '0'})  # Ray's workers import this checkout too
    start = subprocess.run([str(BIN / 'ray'), 'start', '--head', '--node-ip-address', '127.0.0.1', '--port', str(port),
                            '--num-cpus', '2', '--num-gpus', '0', '--include-dashboard', 'false', '--disable-usage-stats',
                            f'--temp-dir={tmp}'], env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    yield f'127.0.0.1:{port}'
    subprocess.run([str(BIN / 'ray'), 'stop', '--force'], env=env, capture_output=True, timeout=120)


def _metrics(root):
    return {p.parent.name: json.loads(p.read_text())['metrics'] for p in sorted(Path(root).glob('tiny/*/result.json'))}


def test_ray_backend_matches_the_local_backend(tmp_path, tiny_grid, cluster):
    grid = tiny_grid(['ce-tor-CNN001', 'tulipce-tor-CNN001', 'advce-tor-CNN001', 'stradesce-tor-CNN001'])
    t0 = time.perf_counter()
    r = lolip('grid', grid, '--root', tmp_path / 'ray', '--execute', 'process', '--device', 'cpu', '--backend', 'ray',
              '--address', cluster)
    t_ray = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'summary: 4 ran' in r.stdout, r.stdout
    t0 = time.perf_counter()
    l = lolip('grid', grid, '--root', tmp_path / 'local', '--execute', 'process', '--device', 'cpu', '--jobs', '2')
    t_local = time.perf_counter() - t0
    assert l.returncode == 0, l.stdout + l.stderr
    a, b = _metrics(tmp_path / 'ray'), _metrics(tmp_path / 'local')
    assert len(a) == 4 and a.keys() == b.keys()
    for k in a: assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
    print(f'\ntiny grid of 4: ray {t_ray:.1f} s, local --jobs 2 {t_local:.1f} s')
    again = lolip('grid', grid, '--root', tmp_path / 'ray', '--execute', 'process', '--device', 'cpu', '--backend', 'ray',
                  '--address', cluster)
    assert 'summary: 0 ran, 4 skipped' in again.stdout, again.stdout


def _job_process(folder: Path):
    "PID of the process running the job whose result folder is `folder`."
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: cmd = (d / 'cmdline').read_bytes().decode(errors='replace')
        except OSError: continue
        if '_main_job' in cmd and str(folder) in cmd: return int(d.name)
    return None


def _parent(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('PPid:'): return int(line.split()[1])


def test_killed_ray_worker_is_retried_and_resumes(tmp_path, tiny_grid, cluster):
    import torch
    grid = tiny_grid(['advce-tor-CNN001'], name='tiny')
    spec = json.loads(grid.read_text())
    spec['jobs'][0]['params'].update(epochs=3, n_train=256)
    grid.write_text(json.dumps(spec))
    root = tmp_path / 'results'
    driver = subprocess.Popen([*LOLIP, 'grid', str(grid), '--root', str(root), '--execute', 'process',
                               '--device', 'cpu', '--backend', 'ray', '--address', cluster],
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    folder = None
    t0 = time.time()
    while time.time() - t0 < 300:   # wait for the first epoch's checkpoint
        ck = next(root.glob('tiny/*/checkpoint.pt'), None)
        if ck is not None:
            try:
                saved = torch.load(ck, weights_only=True)
                if saved['epoch'] >= 1: folder = ck.parent; break
            except Exception: pass
        time.sleep(0.1)
    assert folder is not None, 'no checkpoint appeared'
    job = _job_process(folder.resolve())
    assert job is not None
    worker = _parent(job)
    os.kill(worker, signal.SIGKILL)                   # the Ray worker dies mid-job; its job process dies with it
    out = driver.communicate(timeout=600)[0]
    assert driver.returncode == 0, out
    assert 'summary: 1 ran' in out, out
    res = json.loads((folder / 'result.json').read_text())
    assert [h['epoch'] for h in res['history']] == [1, 2, 3]
    assert res['history'][0] == saved['history'][0]   # epoch 1 came from the checkpoint (same recorded seconds): resumed
