"""bf16 autocast as an option: where it applies (differentiated passes: the training step, the evaluation attacks'
ascents), what stays float32 (every reported prediction, the Lipschitz ascents), how it is recorded, and that a
configuration at the default keeps its old hash."""
import dataclasses
import json

import pytest
import torch

from lolip_nb.config import Config, config_hash
from lolip_nb.core import LolipError, with_precision, native_bf16
from lolip_nb.data import load_dataset
from lolip_nb.evaluate import evaluate
from lolip_nb.experiment import run_experiment, read_result
from lolip_nb.models import build_model
from lolip_nb.train import train

torch.set_num_threads(1)
EPS = 0.1


def _cfg(**kw):
    return Config(**{**dict(dataset='fashion_mnist', arch='CNN001', loss='strades6ce', eps=EPS, optimizer='adam', lr=1e-3,
                            batch_size=32, epochs=1, n_train=96, n_test=48, autoattack=None, n_strong=16), **kw})


class DtypeSpy:
    "Records the dtype of the first dense layer's input on every forward pass, with whether gradients were on."
    def __init__(self, model):
        self.seen = []
        lin = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        lin.register_forward_hook(lambda mod, inp, out: self.seen.append((torch.is_grad_enabled(), out.dtype)))

    def dtypes(self, grad):
        return {d for g, d in self.seen if g == grad}


@pytest.fixture(scope='module')
def data():
    return load_dataset('fashion_mnist', 'train', subset=96, seed=0), load_dataset('fashion_mnist', 'test', subset=48, seed=0)


def test_grad_passes_bf16_no_grad_passes_fp32(data):
    torch.manual_seed(0)
    model = build_model('CNN001', 1, 10, 28).eval()
    spy = DtypeSpy(model)
    evaluate(model, data[0], data[1], eps=EPS, autoattack=None, n_strong=16, precision='bf16')
    assert spy.dtypes(True) == {torch.bfloat16, torch.float32}, spy.dtypes(True)  # attack steps bf16, Lipschitz ascents fp32
    assert spy.dtypes(False) == {torch.float32}, spy.dtypes(False)  # every reported prediction and value in fp32
    spy.seen.clear()
    evaluate(model, data[0], data[1], eps=EPS, autoattack=None, n_strong=16)
    assert spy.dtypes(True) | spy.dtypes(False) == {torch.float32}


def test_bf16_evaluation_close_to_fp32(data):
    model, _ = train(_cfg(loss='ce'), progress=False, data=data[0])
    torch.manual_seed(1); a = evaluate(model, data[0], data[1], eps=EPS, autoattack=None, n_strong=16)
    torch.manual_seed(1); b = evaluate(model, data[0], data[1], eps=EPS, autoattack=None, n_strong=16, precision='bf16')
    assert a.keys() == b.keys()
    assert a['test_acc'] == b['test_acc'] and a['train_acc'] == b['train_acc']  # clean predictions are fp32 in both
    for k in ('test_lip', 'test_lip_original', 'train_lip', 'train_lip_original', 'test_lip_strong'):
        assert a[k] == b[k], (k, a[k], b[k])  # the Lipschitz ascents are fp32 in both (and draw the same starts)
    for k in ('adv_test_acc', 'adv_train_acc'):
        assert abs(a[k] - b[k]) <= 0.1, (k, a[k], b[k])


def test_training_step_under_autocast(data):
    seen = {}
    for precision in ('fp32', 'bf16'):
        cfg = _cfg(precision=precision)
        model, hist = train(cfg, progress=False, data=data[0])
        seen[precision] = (hist[0]['loss'], torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert all(torch.isfinite(p).all() for p in model.parameters())
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    (l32, w32), (l16, w16) = seen['fp32'], seen['bf16']
    assert not torch.equal(w32, w16)               # the option changes the arithmetic ...
    assert abs(l32 - l16) <= 0.05 * abs(l32), (l32, l16)  # ... but not the training
    spy_model = build_model('CNN001', 1, 10, 28)
    spy = DtypeSpy(spy_model)
    from lolip_nb.defenses import method_loss
    fn, kw = method_loss('strades6ce')
    spy_model.train()
    fn(with_precision(spy_model, 'bf16'), data[0][0][:8], data[0][1][:8], EPS, 'inf', **kw).backward()
    assert spy.dtypes(True) == {torch.bfloat16}


def test_config_and_hash():
    c = _cfg()
    d = c.to_dict()
    assert d['precision'] == 'fp32' and d['eval_precision'] == 'fp32'
    old = {k: v for k, v in d.items() if k not in ('precision', 'eval_precision')}
    assert config_hash(Config.from_dict(old)) == config_hash(c)  # results written before the fields existed keep their hash
    assert config_hash(dataclasses.replace(c, precision='bf16')) != config_hash(c)
    with pytest.raises(LolipError, match=r"eval_precision must be one of \['fp32', 'bf16'\], got 'half'"):
        dataclasses.replace(c, eval_precision='half')
    with pytest.raises(LolipError, match="unknown precision 'fp16'"):
        with_precision(torch.nn.Linear(2, 2), 'fp16')
    assert isinstance(native_bf16('cpu'), bool)


def test_recorded_in_result(tmp_path):
    cfg = _cfg(loss='ce', precision='bf16', eval_precision='bf16', n_train=64, n_test=32)
    res = run_experiment(cfg, tmp_path / 'run', device='cpu', progress=False)
    assert res['config']['precision'] == 'bf16' and res['config']['eval_precision'] == 'bf16'
    assert res['evaluation']['precision'] == dict(attacks='bf16', lipschitz='fp32', verdicts_and_values='fp32')
    assert isinstance(res['provenance']['native_bf16'], bool)
    assert read_result(tmp_path / 'run')['config_hash'] == config_hash(cfg)
    assert json.loads((tmp_path / 'run' / 'result.json').read_text())['config']['precision'] == 'bf16'
