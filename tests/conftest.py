import os, shutil, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# the `lolip` command of this checkout: the environment's console script may point at another clone sharing the venv
LOLIP = [sys.executable, '-m', 'lolip_nb.cli']


def child_env(env=None) -> dict:
    "The environment of a child process: this checkout first on Python's path, unbuffered output, `env` on top."
    e = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    e['PYTHONPATH'] = os.pathsep.join([str(REPO)] + ([e['PYTHONPATH']] if e.get('PYTHONPATH') else []))
    return e


def lolip(*args, cwd=None, env=None, timeout=600, **kw):
    "Run this checkout's `lolip` command as a user would; returns the CompletedProcess."
    return subprocess.run([*LOLIP, *map(str, args)], cwd=cwd, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout, **kw)


# AutoAttack's cheaper version on a few points: the standard one (Square's 5,000 queries) takes minutes on a CPU
TINY = dict(dataset='fashion_mnist', eps=0.1, norm='inf', attack='pgd', random_seed=0, epochs=1, n_train=96, n_test=48,
            autoattack='fast', n_strong=16)


@pytest.fixture
def tiny_grid(tmp_path):
    "Write a grid JSON file of tiny real jobs and return a function that makes more."
    def make(models, name='tiny', extra=()):
        import json
        jobs = [{'kind': 'experiment01', 'params': dict(TINY, model=m)} for m in models] + list(extra)
        path = tmp_path / f'{name}.json'
        path.write_text(json.dumps({'name': name, 'jobs': jobs}))
        return path
    return make
