"""The package builds and installs like any other: sdist, a wheel built from that sdist, and the wheel installed into a
fresh virtual environment (offline: it reuses this environment's pinned dependencies through a path file)."""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# the installed package alone: no checkout on Python's path (the tests run with PYTHONPATH at theirs), no notebook folder
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'LOLIP_NOTEBOOKS')}


def run(*cmd, cwd=None, env=CLEAN_ENV, **kw):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('pkg')
    src = tmp / 'src'
    # the committed files of this checkout (what a clone holds), not the build products lying around in it
    files = run('git', 'ls-files', '-z', cwd=REPO).stdout.split('\0')
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((REPO / f).read_bytes())
    dist = tmp / 'dist'
    run(sys.executable, '-m', 'build', '--sdist', '--no-isolation', '-o', dist, cwd=src)
    sdist = next(dist.glob('*.tar.gz'))
    unpacked = tmp / 'unpacked'; unpacked.mkdir()
    run('tar', 'xzf', sdist, '-C', unpacked)
    root = next(unpacked.iterdir())
    run(sys.executable, '-m', 'build', '--wheel', '--no-isolation', '-o', dist, cwd=root)  # the wheel comes from the sdist
    wheel = next(dist.glob('*.whl'))
    venv = tmp / 'venv'
    run(sys.executable, '-m', 'venv', venv)
    py = venv / 'bin' / 'python'
    site = run(py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])').stdout.strip()
    Path(site, 'pinned.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')  # torch & co. from this environment
    run(py, '-m', 'pip', 'install', '--no-deps', '--no-index', '-q', wheel)
    return venv, wheel


def test_the_wheel_installs_and_imports_from_its_own_folder(installed):
    venv, wheel = installed
    py = venv / 'bin' / 'python'
    out = run(py, '-c', 'import lolip_nb, sys; print(lolip_nb.__file__); print(lolip_nb.__version__); '
                        'from lolip_nb import pgd, evaluate, trades_loss; print(sys.prefix)', cwd='/').stdout.split()
    assert out[0].startswith(str(venv)) and out[1] == '0.1.0'
    run(venv / 'bin' / 'lolip', '--help', cwd='/')
    assert (venv / 'share' / 'lolip_nb' / 'experiments' / 'experiment01.ipynb').is_file()
    assert (Path(out[0]).parent / 'py.typed').is_file()


def test_the_installed_package_finds_its_experiment_notebooks(installed):
    "No checkout around: the runner takes the notebooks the wheel installed under <venv>/share, and papermill can run them."
    venv, _ = installed
    found = run(venv / 'bin' / 'python', '-c', 'from lolip_nb.runner import notebooks_dir, _has_papermill; '
                'print(notebooks_dir()); print(_has_papermill())', cwd='/').stdout.split()
    assert found == [str(venv / 'share' / 'lolip_nb' / 'experiments'), 'True']


def test_the_metadata_lists_safetensors(installed):
    venv, _ = installed
    reqs = run(venv / 'bin' / 'python', '-c', 'import importlib.metadata as m; print("\\n".join(m.requires("lolip_nb")))',
               cwd='/').stdout.splitlines()
    assert any(r.startswith('safetensors') for r in reqs), reqs


def test_the_metadata_says_what_it_needs(installed):
    venv, _ = installed
    meta = run(venv / 'bin' / 'python', '-c', 'import importlib.metadata as m; d = m.metadata("lolip_nb"); '
               'print(d["Requires-Python"]); print("\\n".join(d.get_all("Requires-Dist") + d.get_all("Classifier")))',
               cwd='/').stdout
    assert meta.splitlines()[0] == '>=3.11'
    for req in ('torch', 'scipy', 'pyautoattack', 'pandas'):
        assert any(line.startswith(req) for line in meta.splitlines()), req
    assert 'License :: OSI Approved :: Apache Software License' in meta
