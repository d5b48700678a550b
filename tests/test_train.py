"Integration tests of training: exact resume after a crash, seed repeatability, model names, loss identities."
import math

import pytest
import torch

import lolip_nb.train as T
from lolip_nb.config import Config, config_hash, model_name, parse_model_name
from lolip_nb.core import LolipError
from lolip_nb.data import load_dataset
from lolip_nb.defenses import FORMS, LOSSES, method_loss, natural_loss, training_loss
from lolip_nb.models import build_model

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def data():
    return load_dataset('fashion_mnist', 'train', subset=96, seed=0)


def _cfg(**kw):
    kw = dict(epochs=2, n_train=96, batch_size=32) | kw
    return parse_model_name('aug01-advbetace-tor-CNN001-adam-lrem3', 'fashion_mnist', **kw)


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


class _Crash(Exception):
    pass


def test_resume_after_interrupt_gives_the_same_weights(tmp_path, data, monkeypatch):
    cfg = _cfg()
    ref, ref_hist = T.train(cfg, device='cpu', progress=False, data=data)
    save = T._save_checkpoint

    def crash(path, **state):
        save(path, **state)
        raise _Crash()

    monkeypatch.setattr(T, '_save_checkpoint', crash)
    with pytest.raises(_Crash):
        T.train(cfg, out_dir=tmp_path, device='cpu', progress=False, data=data)
    monkeypatch.setattr(T, '_save_checkpoint', save)
    ck = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)
    assert ck['epoch'] == 1 and ck['config_hash'] == config_hash(cfg)
    model, hist = T.train(cfg, out_dir=tmp_path, device='cpu', progress=False, data=data)
    assert _same(model, ref)
    assert [h['loss'] for h in hist] == [h['loss'] for h in ref_hist]
    with pytest.raises(LolipError, match='belongs to another configuration'):
        T.train(_cfg(seed=5), out_dir=tmp_path, device='cpu', progress=False, data=data)


def test_corrupt_checkpoint_is_named(tmp_path, data):
    (tmp_path / 'checkpoint.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(LolipError, match='cannot read checkpoint'):
        T.train(_cfg(), out_dir=tmp_path, device='cpu', progress=False, data=data)


def test_seed_repeats_a_run_exactly(data):
    cfg = _cfg(epochs=1)
    a, ha = T.train(cfg, device='cpu', progress=False, data=data)
    b, hb = T.train(cfg, device='cpu', progress=False, data=data)
    c, _ = T.train(_cfg(epochs=1, seed=1), device='cpu', progress=False, data=data)
    assert _same(a, b) and ha[0]['loss'] == hb[0]['loss'] and not _same(a, c)


def test_load_data_honours_subsets():
    cfg = parse_model_name('ce-tor-CNN001', 'fashion_mnist', n_train=50, n_test=20, seed=2)
    (xtr, ytr), (xte, yte) = T.load_data(cfg)
    assert xtr.shape == (50, 1, 28, 28) and len(yte) == 20
    (xtr2, _), _ = T.load_data(cfg)
    assert torch.equal(xtr, xtr2)


@pytest.mark.parametrize('dataset,name,canonical', [
    ('mnist', 'strades6ce-tor-CNN001', 'strades6ce-tor-CNN001'),
    ('cifar10', 'aug01-advce-tor-WRN_40_10_drop20-lrem2', 'aug01-advce-tor-WRN_40_10_drop20-lrem2'),
    ('cifar10', 'aug01-strades6ce-tor-WRN_40_10_drop50', 'aug01-strades6ce-tor-WRN_40_10_drop50'),
    ('svhn', 'sllrce-tor-WRN_40_10-lrem3', 'sllrce-tor-WRN_40_10'),
    ('restricted_imagenet', 'sllrce-tor-ResNet50-adambs128-ep70', 'sllrce-tor-ResNet50'),
    ('mnist', 'ce-tor-CNN001-adam-lrem3-ep5-bs128', 'ce-tor-CNN001-adam-bs128-lrem3-ep5'),
])
def test_model_names_round_trip(dataset, name, canonical):
    cfg = parse_model_name(name, dataset)
    assert model_name(cfg) == canonical
    assert parse_model_name(canonical, dataset) == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg and config_hash(Config.from_dict(cfg.to_dict())) == config_hash(cfg)


@pytest.mark.parametrize('name,params', [('stradesce', dict(beta=0.0)), ('advbetace', dict(lam=0.0)),
                                         ('tulipce', dict(lam=0.0))])
def test_zero_weight_losses_are_cross_entropy(data, name, params):
    x, y = data[0][:16], data[1][:16]
    torch.manual_seed(0)
    net = build_model('CNN001', 1, 10, 28).eval()
    for form in FORMS:
        fn, kw = method_loss(name, form)
        torch.testing.assert_close(fn(net, x, y, 0.1, 'inf', **{**kw, **params}), natural_loss(net, x, y))


def test_every_loss_trains_a_step(data):
    x, y = data[0][:16], data[1][:16]
    for name in LOSSES:
        for form in FORMS:
            torch.manual_seed(0)
            net = build_model('CNN001', 1, 10, 28).train()
            loss = training_loss(net, x, y, name, 0.1, form=form)
            loss.backward()
            assert math.isfinite(loss.item()), (name, form)
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters()), (name, form)


@pytest.mark.parametrize('name', ['strades6ce-tor-CNN001-adam-lrem3', 'sllrce-tor-CNN001', 'advce-tor-CNN001',
                                  'sllrce-tor-CNN001-paper', 'tulipce-tor-CNN001'])
def test_fast_path_gives_the_plain_paths_weights(data, name):
    "On a CPU, `train` (data on the device, no per-step host read, the deferred NaN check) equals a plain loop step for step."
    cfg = parse_model_name(name, 'fashion_mnist', epochs=2, milestones=(1,), n_train=96, batch_size=32)
    fast, hist = T.train(cfg, device='cpu', progress=False, data=data, graphs=True)  # graphs: CUDA only, ignored here
    x, y = data
    T.seed_all(cfg.seed)
    plain = build_model(cfg.arch, 1, 10, 28)
    opt = T._optimizer(cfg, plain.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=0.1)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    loss_fn, kw = method_loss(cfg.loss, cfg.form)
    losses = []
    for _ in range(cfg.epochs):
        perm, total = torch.randperm(len(x), generator=shuffle), 0.0
        for i in range(0, len(x), cfg.batch_size):
            xb, yb = x[perm[i:i + cfg.batch_size]], y[perm[i:i + cfg.batch_size]]
            plain.train()
            loss = loss_fn(plain, xb, yb, cfg.eps, cfg.norm, **kw)
            opt.zero_grad(); loss.backward(); opt.step()
            total += loss.item()                      # the plain path reads the loss back every step
        losses.append(total / len(x)); sched.step()
    assert _same(fast, plain)
    assert [h['loss'] for h in hist] == pytest.approx(losses, rel=1e-6)
