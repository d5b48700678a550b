"""Attacks, perturbations and the Lipschitz estimate against closed forms, and a real check on Fashion-MNIST.

Run: pytest tests/test_attacks.py (about a minute on 2 CPU cores)."""
import itertools, math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from lolip_nb.perturb import ascend, project, random_start
from lolip_nb.attacks import pgd, multi_targeted, attack_dataset
from lolip_nb.lipschitz import local_lipschitz
from lolip_nb.evaluate import accuracy, evaluate
from lolip_nb.models import build_model


def _linear(W, b):
    lin = nn.Linear(W.shape[1], W.shape[0])
    lin.weight.data, lin.bias.data = W.clone(), b.clone()
    return nn.Sequential(nn.Flatten(), lin).eval()


def _margin(model, x, y):
    with torch.no_grad(): z = model(x)
    return z.gather(1, y[:, None])[:, 0] - z.scatter(1, y[:, None], -math.inf).amax(1)


def _ball_ok(xa, x, eps, norm, tol=1e-5):
    d = (xa - x).flatten(1)
    size = d.abs().amax(1) if norm == 'inf' else d.norm(dim=1)
    return bool((size <= eps + tol).all() and xa.min() >= 0 and xa.max() <= 1)


# ---------------------------------------------------------------- closed forms: linear models

@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('eps', [0.05, 0.3])
def test_pgd_and_multi_targeted_reach_exact_linf_worst_case_of_linear_model(seed, eps):
    """2-class linear model: the box-constrained l-inf worst margin, found by enumerating every vertex of the
    box-clipped ball (D = 6: 64 vertices), must be reached by PGD and by multi-targeted to 1e-4."""
    g = torch.Generator().manual_seed(seed)
    D = 6
    W, b = torch.randn(2, D, generator=g) * 0.5, torch.randn(2, generator=g) * 0.1
    model = _linear(W, b)
    x = torch.rand(64, D, generator=g)
    x[:16] = x[:16].round()  # some points on the faces of [0, 1]^D, where the box binds
    y = model(x).argmax(1).detach()
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    corners = torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)))  # (64, D)
    verts = lo[:, None] + corners[None] * (hi - lo)[:, None]  # (N, 64, D): every vertex of the clipped ball
    zv = verts @ W.T + b
    zy, zo = zv.gather(2, y[:, None, None].expand(-1, 64, 1))[..., 0], zv.gather(2, (1 - y)[:, None, None].expand(-1, 64, 1))[..., 0]
    exact = (zy - zo).amin(1)
    torch.manual_seed(seed)
    for xa in (pgd(model, x, y, eps), multi_targeted(model, x, y, eps)):
        assert _ball_ok(xa, x, eps, 'inf')
        assert torch.allclose(_margin(model, xa, y), exact, atol=1e-4)


def test_lipschitz_of_linear_map_reaches_operator_norm():
    """||W d||_1 / ||d||_inf peaks at max over sign vectors of ||W s||_1 (enumerated); the estimator, given small steps
    and restarts, gets within alpha/eps = 1% of it from below, and never above."""
    torch.manual_seed(0)
    W = torch.randn(4, 8)
    model = _linear(W, torch.zeros(4))
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=8)))
    exact = (signs @ W.T).abs().sum(1).max().item()
    x = 0.3 + 0.4 * torch.rand(20, 8)
    _, per = local_lipschitz(model, x, 0.1, steps=200, step_size=0.001, restarts=8)
    assert (per <= exact * (1 + 1e-5)).all() and (per >= 0.99 * exact).all(), (per.min().item(), exact)


# ---------------------------------------------------------------- invariants on a CNN

@pytest.mark.parametrize('norm,eps', [('inf', 0.1), ('2', 1.0)])
def test_perturbations_stay_in_ball_and_box(norm, eps):
    torch.manual_seed(0)
    model = build_model('CNN001').eval()
    x = torch.rand(32, 1, 28, 28)
    x[:8] = x[:8].round()  # saturated pixels
    y = torch.randint(0, 10, (32,))
    for start in ('uniform', 'normal', 'none'):
        assert _ball_ok(random_start(x, eps, norm, start), x, eps, norm)
    assert _ball_ok(project(x + torch.randn_like(x), x, eps, norm), x, eps, norm)
    for attack in ('pgd', 'multi_targeted'):
        xa, _ = attack_dataset(model, x, y, eps, attack, norm, batch_size=16, progress=False, steps=3)
        assert _ball_ok(xa, x, eps, norm)
    ce = lambda z: F.cross_entropy(model(z), y, reduction='none')
    assert _ball_ok(ascend(x, ce, eps, norm, steps=5, step_size=10 * eps, restarts=2), x, eps, norm)
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- a real check on Fashion-MNIST

def _fashion(split, n, seed=0):
    from lolip_nb.data import load_dataset, DatasetUnavailable
    try: return load_dataset('fashion_mnist', split, subset=n, seed=seed)
    except DatasetUnavailable as e: pytest.skip(str(e))


@pytest.fixture(scope='module')
def fashion_mlp():
    """An MLP trained for 300 Adam steps (batch 128) on 5,000 Fashion-MNIST images."""
    torch.manual_seed(0)
    xtr, ytr = _fashion('train', 5000)
    xte, yte = _fashion('test', 1000)
    model = build_model('MLP')
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(300):
        i = torch.randint(0, len(xtr), (128,), generator=g)
        opt.zero_grad(); F.cross_entropy(model(xtr[i]), ytr[i]).backward(); opt.step()
    return model.eval(), (xtr[:1000], ytr[:1000]), (xte, yte)


def test_fashion_mnist_pgd_breaks_natural_model(fashion_mlp):
    model, _, (x, y) = fashion_mlp
    clean = accuracy(model, x, y)
    _, broken = attack_dataset(model, x, y, 0.1, progress=False)
    adv = 1 - broken.float().mean().item()
    assert clean > 0.7, clean
    assert adv < 0.2, adv
    assert adv <= clean


def test_fashion_mnist_multi_targeted_at_least_as_strong_as_pgd(fashion_mlp):
    model, _, (x, y) = fashion_mlp
    x, y = x[:300], y[:300]
    eps = 0.03  # small radius: PGD leaves some examples standing, so the comparison means something
    torch.manual_seed(0)
    _, pgd_broken = attack_dataset(model, x, y, eps, 'pgd', progress=False)
    xa_mt, mt_broken = attack_dataset(model, x, y, eps, 'multi_targeted', progress=False)
    assert 0 < pgd_broken.float().mean() < 1
    assert mt_broken.float().mean() >= pgd_broken.float().mean()
    assert _ball_ok(xa_mt, x, eps, 'inf')


def test_fashion_mnist_more_restarts_never_weaker(fashion_mlp):
    model, _, (x, y) = fashion_mlp
    x, y = x[:500], y[:500]
    with torch.no_grad(): y_ok = model(x).argmax(1) == y
    x, y = x[y_ok], y[y_ok]
    eps = 0.03
    torch.manual_seed(7); one = pgd(model, x, y, eps, steps=5, restarts=1)
    torch.manual_seed(7); three = pgd(model, x, y, eps, steps=5, restarts=3)
    with torch.no_grad():
        b1, b3 = model(one).argmax(1) != y, model(three).argmax(1) != y
    assert (b3 >= b1).all()
    assert b3.sum() >= b1.sum()


def test_fashion_mnist_evaluate(fashion_mlp):
    model, (xtr, ytr), (xte, yte) = fashion_mlp
    r = evaluate(model, (xtr[:300], ytr[:300]), (xte[:300], yte[:300]), 0.1, autoattack='fast', n_strong=100)
    assert r['adv_train_acc'] <= r['train_acc'] and r['adv_test_acc'] <= r['test_acc']
    assert r['test_acc'] > 0.7 and r['test_lip'] > 0 and r['train_lip'] > 0
    assert all(isinstance(v, float) for v in r.values())
    # AutoAttack is at least as strong as PGD-10 on the same points, and the strong search finds larger ratios
    assert r['pgd_aa_gap'] >= 0 and r['adv_test_acc_aa'] <= r['test_acc']
    assert r['lip_over_strong'] <= 1.0 and r['test_lip_original'] < r['test_lip']


def test_fast_evaluation_gives_the_plain_paths_numbers():
    "Batch-16 evaluation (the original's) and the automatic batch give the same successes and Lipschitz values on a CPU."
    from lolip_nb.core import seed_all
    x, y = _fashion('test', 256)
    seed_all(0)
    model = build_model('CNN001').eval()
    runs = {}
    for bs in (16, None):
        seed_all(1); _, broken = attack_dataset(model, x, y, 0.1, batch_size=bs, progress=False)
        seed_all(1); _, lip = local_lipschitz(model, x, 0.1, batch_size=bs)
        runs[bs] = broken, lip
    assert torch.equal(runs[16][0], runs[None][0]) and torch.equal(runs[16][1], runs[None][1])
