"""The original code's arithmetic, recomputed literally.

Each test writes one training step (or one measurement) the way the published code computes it
(github.com/yangarbiter/robust-local-lipschitz, commit 656616ae: files and lines in the comments), from the same seed
and the same real batch, and compares it with what `lolip_nb` computes for the original's name: the loss value and
every parameter's gradient to a relative 1e-5. The literal versions are deliberately plain: loops, in-place updates
and the original's own order of operations, including its mistakes.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lolip_nb.data import load_dataset
from lolip_nb.defenses import training_loss
from lolip_nb.evaluate import evaluate
from lolip_nb.lipschitz import local_lipschitz_original
from lolip_nb.models import build_model

torch.set_num_threads(1)
EPS = 0.1


@pytest.fixture(scope='module')
def batch():
    return load_dataset('fashion_mnist', 'train', subset=32, seed=0)


@pytest.fixture(scope='module')
def net():
    "A CNN001 (channel dropout, then dropout) trained for a few steps, so that its gradients are not those of an initial net."
    torch.manual_seed(0)
    m = build_model('CNN001', 1, 10, 28)
    x, y = load_dataset('fashion_mnist', 'train', subset=512, seed=1)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    for i in range(0, 512, 64):
        opt.zero_grad(); F.cross_entropy(m(x[i:i + 64]), y[i:i + 64]).backward(); opt.step()
    return m


def ce_sum(logits, y):
    return torch.nn.CrossEntropyLoss(reduction='sum')(logits, y)


def kl_sum(log_q, p):
    return torch.nn.KLDivLoss(reduction='sum')(log_q, p)


def cleverhans_pgd(model, x, y, eps, eps_iter, nb_iter):
    "cleverhans' projected_gradient_descent with rand_init, clip [0, 1], l-inf, mean cross-entropy (projected_gradient_descent.py)."
    eta = torch.zeros_like(x).uniform_(-eps, eps)
    eta = torch.clamp(eta, -eps, eps)
    adv_x = torch.clamp(x + eta, 0, 1)
    for _ in range(nb_iter):
        xx = adv_x.clone().detach().requires_grad_(True)          # fast_gradient_method.py:55-80
        loss = torch.nn.CrossEntropyLoss()(model(xx), y)
        grad, = torch.autograd.grad(loss, xx)
        adv_x = torch.clamp(xx + eps_iter * torch.sign(grad), 0, 1).detach()
        eta = torch.clamp(adv_x - x, -eps, eps)
        adv_x = torch.clamp(x + eta, 0, 1)
    return adv_x


def original_loss(name, model, x, y, eps):
    "One training step's loss of the original's `name`, computed as its torch_model.fit_dataset and helpers do."
    model.train()                                                  # torch_model.py:129
    if 'trades' in name:                                           # trades.py
        beta = {'strades6ce': 6.0, 'trades6ce': 6.0, 'strades3ce': 3.0}.get(name, 1.0)
        steps, step_size, B = 10, eps * 2 / 10, len(x)
        model.eval()
        x_adv = x.detach() + 0.001 * torch.randn(x.shape).detach()
        for _ in range(steps):
            x_adv.requires_grad_()
            with torch.enable_grad():
                loss_kl = kl_sum(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
            grad = torch.autograd.grad(loss_kl, [x_adv])[0]
            x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
        model.train()
        x_adv = torch.clamp(x_adv, 0.0, 1.0).detach()
        outputs = model(x)
        loss_natural = ce_sum(outputs, y)
        loss_robust = (1.0 / B) * kl_sum(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        return loss_natural + beta * B * loss_robust if name.startswith('s') else loss_natural + beta * loss_robust
    if 'tulip' in name:                                            # tulip.py; zero_grad before it (torch_model.py:178)
        model.zero_grad()
        x = x.clone().requires_grad_(True)
        lx = F.cross_entropy(model(x), y, reduction='none')
        loss = lx.sum()
        loss.backward(retain_graph=True)                           # puts grad CE_sum into the weights already
        dx = x.grad.data
        v = dx.view(len(x), -1)
        nv = v.norm(2, dim=-1, keepdim=True)
        nz = nv.view(-1) > 0
        v[nz] = v[nz].div(nv[nz])
        xf = x.detach() + 1.0 * v.view(x.shape)
        lf = F.cross_entropy(model(xf), y, reduction='none')
        dl = (lf - lx) / 1.0
        return loss + 1.0 * dl.pow(2).sum() / 2
    if 'llr' in name:                                              # llr.py
        lambd, mu, B = 4.0, 3.0, len(x)
        model.eval()
        x = x.clone()
        def model_grad(x):
            x.requires_grad_(True)
            lx = ce_sum(model(x), y)
            lx.backward()
            ret = x.grad
            x.grad.zero_()                                         # ret is x.grad itself: now zero
            x.requires_grad_(False)
            return ret
        def grad_dot(x, delta, mg):
            return torch.mean(torch.matmul(mg.flatten(start_dim=1), delta.flatten(start_dim=1).T))
        def g(x, delta, mg):
            return torch.abs(ce_sum(model(x + delta), y) - grad_dot(x, delta, mg))
        mg = model_grad(x)
        delta = (0.001 * torch.randn(x.shape)).detach().requires_grad_(True)
        opt = torch.optim.SGD([delta], lr=eps / 2)
        for _ in range(2):
            opt.zero_grad()
            loss = (-1) * g(x, delta, mg)
            loss.backward()
            grad_norms = delta.grad.view(B, -1).norm(p=np.inf, dim=1)
            delta.grad.div_(grad_norms.view(-1, 1, 1, 1))
            if (grad_norms == 0).any():
                delta.grad[grad_norms == 0] = torch.randn_like(delta.grad[grad_norms == 0])
            opt.step()
            delta.data.add_(x)
            delta.data.clamp_(0, 1).sub_(x)
            delta.data.renorm_(p=np.inf, dim=0, maxnorm=eps)
        delta.requires_grad_(False)
        model.train()
        model.zero_grad()
        outputs = model(x)
        loss = ce_sum(outputs, y) + lambd * g(x, delta, mg)
        return loss + mu * grad_dot(x, delta, mg) * B if name.startswith('s') else loss + mu * grad_dot(x, delta, mg)
    if 'advbeta' in name:                                          # torch_model.py:201-222
        advx = cleverhans_pgd(model, x, y, eps, eps / 5, 10)      # in train mode
        beta = {'advbeta.5ce': 0.5, 'advbeta2ce': 2.0}.get(name, 1.0)
        outputs = model(advx)
        adv_loss = ce_sum(outputs, y)
        return ce_sum(model(x), y) + beta * adv_loss
    if 'adv' in name:                                              # torch_model.py:223-232
        x = cleverhans_pgd(model, x, y, eps, eps / 5, 10)
    return ce_sum(model(x), y)


def grads_of(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def close(a, b, rtol=1e-5):
    "Relative agreement of two tensors (or floats) in norm."
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item() <= rtol


@pytest.mark.parametrize('name', ['ce', 'advce', 'advbeta.5ce', 'advbeta2ce', 'stradesce', 'strades6ce', 'trades6ce',
                                  'sllrce', 'llrce', 'tulipce'])
def test_one_training_step_is_the_originals(batch, net, name):
    x, y = batch
    ours_net, lit_net = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(11)
    ours_net.train()
    ours = training_loss(ours_net, x, y, name, EPS, form='original')
    g_ours = grads_of(ours_net, ours)
    torch.manual_seed(11)
    lit = original_loss(name, lit_net, x, y, EPS)
    if 'tulip' in name:  # the original's first backward already left grad CE_sum in the weights; the second adds to it
        first = [p.grad.clone() for p in lit_net.parameters()]
        lit.backward()
        g_lit = [p.grad.clone() for p in lit_net.parameters()]
        assert all(not close(f, g, 1e-3) for f, g in zip(first, g_lit))
    else:
        g_lit = grads_of(lit_net, lit)
    assert close(ours.item(), lit.item()), (ours.item(), lit.item())
    for (pn, _), a, b in zip(ours_net.named_parameters(), g_ours, g_lit):
        assert close(a, b), (name, pn, ((a - b).norm() / b.norm()).item())


@pytest.mark.parametrize('name', ['advce', 'strades6ce', 'sllrce', 'tulipce'])
def test_the_paper_form_is_another_computation(batch, net, name):
    "Where the forms differ, the paper form's step is measurably not the original's (same seed, same batch)."
    x, y = batch
    a_net, b_net = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(11); a = grads_of(a_net, training_loss(a_net, x, y, name, EPS, form='original'))
    torch.manual_seed(11); b = grads_of(b_net, training_loss(b_net, x, y, name, EPS, form='paper'))
    assert not all(close(u, v, 1e-3) for u, v in zip(a, b))


def estimate_local_lip_v2(model, X, eps, top_norm=1, btm_norm=np.inf, batch_size=16, perturb_steps=10, step_size=0.003):
    "utils.py:32-75 of the original, on CPU tensors (its loader only batches them)."
    def local_lip(x, xp, reduction='mean'):
        down = torch.flatten(x - xp, start_dim=1)
        top = torch.flatten(model(x), start_dim=1) - torch.flatten(model(xp), start_dim=1)
        ret = torch.norm(top, dim=1, p=top_norm) / torch.norm(down + 1e-6, dim=1, p=btm_norm)
        return torch.mean(ret) if reduction == 'mean' else torch.sum(ret)
    model.eval()
    total = 0.
    for i in range(0, len(X), batch_size):
        x = X[i:i + batch_size]
        x_adv = x + 0.001 * torch.randn(x.shape)
        for _ in range(perturb_steps):
            x_adv.requires_grad_(True)
            loss = (-1) * local_lip(x, x_adv)
            grad, = torch.autograd.grad(loss, x_adv)
            eta = step_size * grad.sign()
            x_adv = x_adv.detach() + eta
            eta = torch.clamp(x_adv - x, -eps, eps)
            x_adv = torch.clamp(x + eta, 0, 1.0)
        with torch.no_grad(): total += local_lip(x, x_adv, reduction='sum').item()
    return total / len(X)


def test_lipschitz_original_is_the_originals_procedure(net):
    x, _ = load_dataset('fashion_mnist', 'test', subset=64, seed=0)
    for norm, p in (('inf', np.inf), ('2', 2)):
        torch.manual_seed(3); ours, per = local_lipschitz_original(net, x, EPS, norm, batch_size=16)
        torch.manual_seed(3); lit = estimate_local_lip_v2(net, x, EPS, btm_norm=p)
        assert close(ours, lit, 1e-5), (norm, ours, lit)
        assert per.shape == (64,)


def test_adversarial_accuracy_both_ways(net):
    "Ours needs x and x_adv right; the original's is the accuracy on x_adv (experiment01.py:40-41), from the same attack."
    x, y = load_dataset('fashion_mnist', 'test', subset=200, seed=0)
    torch.manual_seed(5)
    m = evaluate(net, (x[:8], y[:8]), (x, y), EPS, autoattack=None, n_strong=8)
    assert m['adv_test_acc'] <= m['adv_test_acc_original'] <= 1
    assert m['adv_test_acc'] <= m['test_acc']
