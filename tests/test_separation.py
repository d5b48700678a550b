"Exactness of lolip_nb.separation against brute force, and the `lolip separation` command body."
import json, math
from pathlib import Path

import pytest
import torch

from lolip_nb.core import LolipError
from lolip_nb.data import load_dataset
from lolip_nb.separation import _brute, nearest_other, separation_main

def _have_fashion():
    try: load_dataset('fashion_mnist', 'test', subset=1); return True
    except LolipError: return False

HAVE_FASHION = _have_fashion()  # Debian's package, or $LOLIP_DATA/fashion_mnist (a GPU machine with carried files)


@pytest.fixture(scope='module')
def fashion():
    if not HAVE_FASHION: pytest.skip('Debian dataset-fashion-mnist not installed')
    xtr, ytr = load_dataset('fashion_mnist', 'train', subset=2000, seed=3)
    xte, yte = load_dataset('fashion_mnist', 'test', subset=500, seed=3)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize('norm', ['inf', '2'])
def test_exact_on_fashion(fashion, norm):
    xtr, ytr, xte, yte = fashion
    ltr, lte = (xtr * 255).round(), (xte * 255).round()   # integer levels: brute force is exact on them
    got = nearest_other(xte, yte, xtr, ytr, norm)
    assert torch.allclose(got, _brute(lte, yte, ltr, ytr, norm) / 255, rtol=0, atol=1e-12)
    got_tt = nearest_other(xtr[:600], ytr[:600], xtr[:600], ytr[:600], norm, max_memory=0.001)
    want_tt = _brute(ltr[:600], ytr[:600], ltr[:600], ytr[:600], norm) / 255
    assert torch.allclose(got_tt, want_tt, rtol=0, atol=1e-12)


@pytest.mark.parametrize('norm', ['inf', '2'])
def test_constructed(norm):
    # points on a line: labels alternate, neighbours 2/255 apart, with a duplicate of another label
    x = torch.zeros(6, 1, 3, 3)
    for i in range(5): x[i, 0, 1, 1] = 2 * i / 255
    x[5] = x[2]
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    want = torch.tensor([2, 2, 0, 2, 2, 0], dtype=torch.float64) / 255
    assert torch.allclose(nearest_other(x, y, x, y, norm), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize('norm', ['inf', '2'])
def test_off_grid_random(norm):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(300, 7, generator=g), torch.randint(0, 4, (300,), generator=g)
    assert torch.allclose(nearest_other(x, y, x, y, norm), _brute(x, y, x, y, norm), rtol=0, atol=1e-12)
    assert torch.allclose(nearest_other(x, None, x, None, norm, exclude_self=True),
                          _brute(x, None, x, None, norm, exclude_self=True), rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no GPU')
@pytest.mark.parametrize('norm', ['inf', '2'])
def test_gpu_matches_cpu(fashion, norm):
    xtr, ytr, xte, yte = fashion
    gpu, cpu = nearest_other(xte, yte, xtr, ytr, norm, device='cuda'), nearest_other(xte, yte, xtr, ytr, norm, device='cpu')
    assert torch.equal(gpu, cpu), f'{int((gpu != cpu).sum())} of {len(cpu)} differ, by at most {float((gpu - cpu).abs().max()):.3g}'



def test_cli(tmp_path):
    if not HAVE_FASHION: pytest.skip('Debian dataset-fashion-mnist not installed')
    res = separation_main(['--dataset', 'fashion_mnist', '--norm', 'inf', '--subset', '300', '--out', str(tmp_path)])
    j = json.loads((tmp_path / 'separation.json').read_text())
    assert j['train_train']['min'] == res['train_train']['min'] and j['n_train'] == 300 and j['n_test'] == 300
    assert j['provenance']['command'].startswith('lolip separation') and 'fashion' in j['source']
    assert len(j['train_train']['smallest']) == 10 and j['train_train']['drop'] == 5
    assert (tmp_path / 'separation.png').stat().st_size > 1000
    with pytest.raises(LolipError, match='unknown dataset'):
        separation_main(['--dataset', 'nope', '--out', str(tmp_path)])
    with pytest.raises(LolipError, match='--subset must be positive'):
        separation_main(['--dataset', 'fashion_mnist', '--subset', '0', '--out', str(tmp_path)])
