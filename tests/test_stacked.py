"Stacked training equals separate training (per method and form), and a stacked grid writes, resumes and tabulates per-job results."
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, lolip
from lolip_nb.config import Config, parse_model_name
from lolip_nb.defenses import LOSSES, FORMS, training_loss, method_loss, trades_loss, _pgd_ce, _trades_adv
from lolip_nb.models import CNN001
from lolip_nb.perturb import _start
from lolip_nb.stacked import (StackedCNN001, stack_plan, why_not_stacked, stacked_loss, stacked_ascent, train_stacked_steps,
                              stack_groups)
from lolip_nb.train import load_data, run_steps, train

# every path of the stacked step: Natural; AT and RST with the attack in train (original) and eval mode (paper);
# TRADES with the unprojected start and a separate KL target (original), CE and KL averaged apart or together (trades*ce)
JOBS = [('ce', 'original')] + [(loss, form) for loss in ('advce', 'advbeta2ce', 'strades6ce', 'trades6ce') for form in FORMS]


def _batch(n, dtype, size):
    "`n` Fashion-MNIST images, their centre `size` x `size` pixels (a smaller CNN001 keeps the float64 test quick)."
    (x, y), _ = load_data(Config('fashion_mnist', 'CNN001', 'ce', 0.1, n_train=128, n_test=16))
    lo = (28 - size) // 2
    return x[:n, :, lo:lo + size, lo:lo + size].to(dtype), y[:n]


def _pair(dtype, n, size):
    "K separate CNN001s (one per method and form, dropout off, different weights), their stack, and the starts both use."
    x, y = _batch(n, dtype, size)
    cfgs = [Config('fashion_mnist', 'CNN001', loss, 0.1, form=form) for loss, form in JOBS]
    plans, models = [stack_plan(c) for c in cfgs], []
    for k in range(len(cfgs)):
        torch.manual_seed(k)
        m = CNN001(size=size).to(dtype).train()
        m.drop1.p = m.drop2.p = 0.0  # the random parts made equal: no dropout; the same starts below
        models.append(m)
    stack = StackedCNN001(models)
    stack.p1 = stack.p2 = 0.0
    starts = []
    for k, p in enumerate(plans):  # model k's start exactly as its own loss will draw it after manual_seed(100 + k)
        torch.manual_seed(100 + k)
        starts.append(_start(x, 0.1, 'inf', p.start, 0.001)[0])
    return x, y, cfgs, plans, models, stack, torch.stack(starts)


def _separate_adv(model, cfg, x, y, seed):
    "The adversarial points of the library's own loss for `cfg` (None for Natural), drawn after manual_seed(seed)."
    fn, kw = method_loss(cfg.loss, cfg.form)
    if fn is LOSSES['ce']['fn']: return None
    torch.manual_seed(seed)
    if fn is trades_loss: return _trades_adv(model, x, cfg.eps, 'inf', kw.get('start', 'normal'))
    return _pgd_ce(model, x, y, cfg.eps, 'inf', kw.get('attack_mode', 'eval'), kw.get('start', 'uniform'), kw.get('rule', 'steepest'))


def _compare(dtype, n, size=28):
    "Per model: (|logits diff|, loss rel diff, max over parameters of max|grad diff| / max|grad|, adversarial points that differ)."
    x, y, cfgs, plans, models, stack, starts = _pair(dtype, n, size)
    K = len(cfgs)
    with torch.no_grad(): clean = stack(x.expand(K, *x.shape))
    adv = stacked_ascent(stack, x, y, plans, 0.1, clean, starts)
    total, per = stacked_loss(stack, x, y, plans, 0.1, starts=starts)
    total.backward()
    rows = []
    for k, (c, m) in enumerate(zip(cfgs, models)):
        ref_adv = _separate_adv(m, c, x, y, 100 + k)
        torch.manual_seed(100 + k)
        loss = training_loss(m, x, y, c.loss, c.eps, c.norm, c.form)
        loss.backward()
        with torch.no_grad(): logits = (clean[k] - m.eval()(x)).abs().max().item()
        m.train()
        grad = _grad_diff(stack, k, m)
        flips = 0 if ref_adv is None else int((ref_adv != adv[k]).sum())
        rows.append((c, logits, abs(per[k].item() - loss.item()) / abs(loss.item()), grad, flips, ref_adv, m))
    return x, y, rows, stack, adv, per


def test_stacked_step_is_the_separate_steps_in_float64():
    "Nine methods and forms in one stack, float64: the same adversarial points, loss and gradients as each model's own loss."
    *_, rows, _, _, _ = _compare(torch.float64, 4, size=16)
    for c, logits, loss, grad, flips, _, _ in rows:
        assert logits < 1e-12 and loss < 1e-12 and grad < 1e-10 and flips == 0, (c.loss, c.form, logits, loss, grad, flips)


def _pool_choices(stack, k, x) -> int:
    "Max-pool windows where model k of the stack picks another input than the separate model (near-ties rounded apart)."
    K, w1, b1, w2, b2 = stack.K, *list(stack.parameters())[:4]
    with torch.no_grad():
        h = F.conv2d(F.relu(F.conv2d(x.repeat(1, K, 1, 1), w1.flatten(0, 1), b1.flatten(), groups=K)), w2.flatten(0, 1),
                     b2.flatten(), groups=K)[:, 64 * k:64 * (k + 1)]
        m = stack.unstack(k, CNN001(size=x.shape[-1]).to(x.dtype))
        ref = m.conv2(F.relu(m.conv1(x)))
    return int((F.max_pool2d(h, 2, return_indices=True)[1] != F.max_pool2d(ref, 2, return_indices=True)[1]).sum())


def _grad_diff(stack, k, m) -> float:
    "Over the parameters, the largest max|stacked grad - separate grad| / max|separate grad| of model k."
    return max(((p.grad[k] - m.get_parameter(n).grad).abs().max() / m.get_parameter(n).grad.abs().max()).item()
               for n, p in zip(stack.names, stack.parameters()))


def test_stacked_step_in_float32_agrees_up_to_near_ties(monkeypatch):
    """float32: logits to 1e-5; loss and gradients to 1e-5 at the same adversarial points (the ascent's sign steps may round
    apart: then the separate loss is taken at the stack's points), wherever no max-pool near-tie was rounded apart."""
    import lolip_nb.defenses as D
    x, y, rows, stack, adv, per = _compare(torch.float32, 4, size=20)
    checked = 0
    for k, (c, logits, loss, grad, flips, ref_adv, m) in enumerate(rows):
        assert logits < 1e-5, (c.loss, c.form, logits)
        if flips:  # the library's own loss, at the stack's adversarial points
            monkeypatch.setattr(D, '_pgd_ce', lambda *a, **kw: adv[k])
            monkeypatch.setattr(D, '_trades_adv', lambda *a, **kw: adv[k])
            m.zero_grad()
            ref = training_loss(m, x, y, c.loss, c.eps, c.norm, c.form)
            ref.backward()
            monkeypatch.undo()
            loss, grad, ref_adv = abs(per[k].item() - ref.item()) / abs(ref.item()), _grad_diff(stack, k, m), adv[k]
        assert loss < 1e-5, (c.loss, c.form, loss)
        if _pool_choices(stack, k, x) + (0 if ref_adv is None else _pool_choices(stack, k, ref_adv)) == 0:
            assert grad < 1e-5, (c.loss, c.form, grad); checked += 1
    assert checked >= 5  # most gradients were compared at 1e-5, not only near-ties counted


def test_each_model_starts_and_forwards_as_its_form_says(monkeypatch):
    "Each model's start is the library's for its form, and the original TRADES' KL target comes from a separate forward."
    from lolip_nb.perturb import random_start
    from lolip_nb.stacked import _starts
    x, y, cfgs, plans, models, stack, _ = _pair(torch.float32, 4, 16)
    torch.manual_seed(5)
    got = _starts(x, 0.1, plans)
    torch.manual_seed(5)
    want = torch.stack([random_start(x, 0.1, 'inf', p.start, 0.001) for p in plans])
    assert torch.equal(got, want) and {p.start for p in plans} == {'uniform', 'cube', 'normal', 'normal_raw'}
    raw, normal = ([k for k, p in enumerate(plans) if p.start == s] for s in ('normal_raw', 'normal'))
    assert got[raw].min() < 0 and got[normal].min() >= 0  # the original's TRADES start is not projected into [0, 1]
    calls, forward = [], StackedCNN001.forward
    def counting(self, x, dropout=None):
        calls.append(None if dropout is None else tuple(dropout))
        return forward(self, x, dropout)
    monkeypatch.setattr(StackedCNN001, 'forward', counting)
    for form, train_forwards in (('original', 2), ('paper', 1)):
        calls.clear()
        plan = [stack_plan(Config('fashion_mnist', 'CNN001', 'strades6ce', 0.1, form=form))] * 2
        stacked_loss(StackedCNN001([CNN001(size=16)] * 2), x, y, plan, 0.1)
        assert calls.count((True, True)) == train_forwards, (form, calls)
        assert calls.count((False, False)) == 10  # TRADES' ascent: eval mode
    calls.clear()
    plan = [stack_plan(Config('fashion_mnist', 'CNN001', 'advce', 0.1, form=form)) for form in FORMS]
    stacked_loss(StackedCNN001([CNN001(size=16)] * 2), x, y, plan, 0.1)
    assert calls.count((True, False)) == 10 and calls.count((True, True)) == 1  # AT's ascent: train mode in the original only


def test_plans_follow_the_forms_and_the_rest_falls_back():
    for loss in LOSSES:
        for form in FORMS:
            cfg = parse_model_name(f'{loss}-tor-CNN001' + ('-paper' if form == 'paper' else ''), 'fashion_mnist', 0.1)
            assert (why_not_stacked(cfg) is None) == (LOSSES[loss]['fn'].__name__ in ('natural_loss', 'at_loss', 'rst_loss', 'trades_loss'))
    plan = lambda name: stack_plan(parse_model_name(name, 'fashion_mnist', 0.1))
    assert plan('advbetace-tor-CNN001').attack_train and not plan('advbetace-tor-CNN001-paper').attack_train
    assert plan('stradesce-tor-CNN001').separate and not plan('stradesce-tor-CNN001-paper').separate
    assert plan('trades6ce-tor-CNN001').kl_reduction == 'mean' and plan('trades6ce-tor-CNN001-paper').reduction == 'mean'
    cfgs = [parse_model_name(m, 'fashion_mnist', 0.1) for m in
            ('ce-tor-CNN001', 'tulipce-tor-CNN001', 'advce-tor-CNN001', 'ce-tor-CNN002', 'advce-tor-CNN001-adam',
             'strades6ce-tor-CNN001-paper', 'ce-tor-CNN001-paper')]
    groups, rest = stack_groups(cfgs + [None])  # Natural stacks apart from the attacks; None: a separation job
    assert groups == [[0, 6], [2, 5]] and sorted(rest) == [1, 3, 4], (groups, rest)


def _tiny(names, epochs=2):
    return [parse_model_name(m, 'fashion_mnist', 0.1, epochs=epochs, n_train=32, n_test=16, milestones=(1,), autoattack='fast',
                             n_strong=8) for m in names]


def test_stacked_training_resumes_exactly_and_its_checkpoints_are_trains(tmp_path):
    cfgs = _tiny(['advce-tor-CNN001', 'strades6ce-tor-CNN001'])
    dirs = [tmp_path / 'a' / str(k) for k in range(2)]
    for d in dirs: d.mkdir(parents=True)
    straight = run_steps(train_stacked_steps(cfgs, device='cpu'))
    gen = train_stacked_steps(cfgs, dirs, device='cpu')
    next(gen); next(gen)  # one step per epoch (32 images, batch 64): the first epoch is done when the second step begins
    gen.close()
    assert all(torch.load(d / 'checkpoint.pt', weights_only=True)['epoch'] == 1 for d in dirs)
    lines = []
    resumed = run_steps(train_stacked_steps(cfgs, dirs, device='cpu', logs=[lines.append] * 2))
    assert any(l.startswith('resuming after epoch 1/2') for l in lines)
    for (a, ha), (b, hb) in zip(straight, resumed):
        assert [(h['epoch'], h['loss'], h['acc'], h['lr']) for h in ha] == [(h['epoch'], h['loss'], h['acc'], h['lr']) for h in hb]
        for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()): assert torch.equal(p, q), n
    # a stacked checkpoint is a `train` checkpoint: the ordinary trainer finishes that job from it
    gen = train_stacked_steps(cfgs, [tmp_path / 'b' / str(k) for k in range(2)], device='cpu')
    next(gen); next(gen); gen.close()
    model, hist = train(cfgs[0], tmp_path / 'b' / '0', device='cpu', progress=False)
    assert len(hist) == 2 and hist[0]['loss'] == resumed[0][1][0]['loss']
    # and the other way: a stack resumes from checkpoints that the ordinary trainer wrote
    from lolip_nb.train import train_steps
    for k, c in enumerate(cfgs):
        gen = train_steps(c, tmp_path / 'c' / str(k), device='cpu', progress=False)
        next(gen); next(gen); gen.close()
    lines = []
    mixed = run_steps(train_stacked_steps(cfgs, [tmp_path / 'c' / str(k) for k in range(2)], device='cpu', logs=[lines.append] * 2))
    assert lines[0].startswith('resuming after epoch 1/2') and [len(h) for _, h in mixed] == [2, 2]


def test_stacked_grid_writes_per_job_results_that_load_and_tabulate(tmp_path):
    from lolip_nb.runner import run_grid, summary
    from lolip_nb.experiment import load_run
    from lolip_nb.tables import results_frame
    tiny = dict(TINY, n_train=32, n_test=16, n_strong=8, epochs=2, autoattack=None)  # AutoAttack is not what this tests
    models = ['advce-tor-CNN001', 'advbeta2ce-tor-CNN001-paper', 'strades6ce-tor-CNN001-paper', 'tulipce-tor-CNN001']
    grid = tmp_path / 'stk.json'
    grid.write_text(json.dumps({'name': 'stk', 'jobs': [{'kind': 'experiment01', 'params': dict(tiny, model=m)} for m in models]}))
    root, lines = tmp_path / 'results', []
    # a checkpoint of epoch 1 for the stack, as an interrupted stacked grid leaves it: the grid resumes from it
    from lolip_nb.runner import grid_jobs, job_dir, _config
    name, jobs = grid_jobs(str(grid))
    folders = [job_dir(j, root, name) for j in jobs[:3]]
    gen = train_stacked_steps([_config(j) for j in jobs[:3]], folders, device='cpu')
    next(gen); next(gen); gen.close()
    outcomes = run_grid(str(grid), root, execute='stacked', device='cpu', log=lines.append, status_every=0)
    assert summary(outcomes).startswith('summary: 4 ran, 0 skipped'), (summary(outcomes), lines)
    assert any(l.startswith('[plain] tulipce') for l in lines), lines
    for f in folders:
        assert 'resuming after epoch 1/2' in (f / 'run.log').read_text()
        model, cfg, res = load_run(f)
        assert res['execution']['mode'] == 'stacked' and res['execution']['group_size'] == 3
        assert len(res['history']) == 2 and not (f / 'checkpoint.pt').exists()
    plain = json.loads(next(root.glob('stk/tulipce*/result.json')).read_text())
    assert 'mode' not in plain['execution']
    assert len(results_frame(root, 'stk')) == 4
    again = lolip('grid', grid, '--root', root, '--execute', 'stacked', '--device', 'cpu')  # the command line; all done
    assert again.returncode == 0 and 'summary: 0 ran, 4 skipped' in again.stdout, again.stdout + again.stderr
    table = lolip('table', 'stk', '--root', root)
    assert table.returncode == 0 and '| AT' in table.stdout and '| TRADES(6)' in table.stdout, table.stdout + table.stderr
