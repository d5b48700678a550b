"""CUDA-graph training on a GPU: graphs per batch size and learning rate replay what eager steps compute.

Skipped without CUDA (the schedule of warm-ups, captures and replays is checked on any machine in nbs/10_train.ipynb);
`scripts/gpu_fashion.sh` runs this file first on a borrowed GPU.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from lolip_nb.config import Config, parse_model_name
from lolip_nb.data import load_dataset, DatasetUnavailable
from lolip_nb.train import train, StepReplays

DEVICE = 'cuda'
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU')


@pytest.fixture(scope='module')
def fashion_small():
    try: return load_dataset('fashion_mnist', 'train', subset=64, seed=0)
    except DatasetUnavailable as e: pytest.skip(str(e))


@pytest.fixture
def full_float32():
    os.environ['LOLIP_TF32'] = '0'
    yield
    del os.environ['LOLIP_TF32']


def _run(cfg, x, y, graphs):
    return train(cfg, device='cuda', progress=False, data=(x, y), graphs=graphs)


def test_graphs_follow_the_learning_rate_and_replay_the_last_batch(fashion_small, full_float32):
    # GR on an MLP draws no random numbers; with SGD and full float32 (Adam's normalised steps would magnify last-bit
    # differences of tiny gradients) eager and graph runs agree. 60 images in batches of 16 leave a last batch of 12
    # (a graph of its own from epoch 3); rates 1e-2, 1e-2, 1e-3, 1e-4, each captured again.
    x, y = fashion_small
    x, y = x[:60], y[:60]
    gr = parse_model_name('tulipce-tor-MLP-lrem2', 'fashion_mnist', epochs=4, milestones=(2, 3), batch_size=16)
    eager, h1 = _run(gr, x, y, graphs=False)
    graph, h2 = _run(gr, x, y, graphs=True)
    assert [h['lr'] for h in h2] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])
    for p, q in zip(eager.parameters(), graph.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-4), float((p - q).abs().max())
    assert [h['loss'] for h in h2] == pytest.approx([h['loss'] for h in h1], abs=1e-4)
    assert [h['acc'] for h in h2] == [h['acc'] for h in h1]
    # the comparison can fail: keeping the first rate throughout moves the weights by far more (0.70 on a CPU)
    flat, _ = _run(Config.from_dict({**gr.to_dict(), 'milestones': ()}), x, y, graphs=False)
    assert max((p - q).abs().max().item() for p, q in zip(flat.parameters(), graph.parameters())) > 0.1


def test_replays_draw_new_dropout_masks():
    mask, ones = torch.zeros(64, 128, device='cuda', dtype=torch.bool), torch.ones(64, 128, device='cuda')
    def drop(xb, yb): mask.copy_(F.dropout(xb, 0.5, training=True) != 0)
    run, masks = StepReplays(drop, torch.cuda.Stream()), []
    for _ in range(5):  # two eager warm-ups, a capture and its replay, two more replays
        run(ones, ones[:, 0], 0.1)
        masks.append(mask.clone())
    assert run.captured == [(64, 0.1)]
    assert all(not torch.equal(a, b) for a, b in zip(masks, masks[1:]))
    assert 0.4 < masks[-1].float().mean().item() < 0.6



def test_stacked_graphs_replay_the_stacked_step(fashion_small, full_float32, monkeypatch):
    # the stacked step (AT and TRADES(6) as one model) replayed as graphs gives what it gives eagerly, across learning-rate
    # phases and the last partial batch; its random draws (dropout masks, ascent starts) are switched off so that the
    # two runs can be compared number for number
    import lolip_nb.stacked as st
    from lolip_nb.models import build_model
    from lolip_nb.train import run_steps

    def no_dropout(*a, **k):
        m = build_model(*a, **k)
        m.drop1.p = m.drop2.p = 0.0
        return m
    monkeypatch.setattr(st, 'build_model', no_dropout)
    monkeypatch.setattr(st, '_starts', lambda x, eps, plans: x.expand(len(plans), *x.shape).clone())
    x, y = fashion_small
    cfgs = [parse_model_name(f'{m}-tor-CNN001-lrem2', 'fashion_mnist', epochs=4, milestones=(2, 3), batch_size=16)
            for m in ('advce', 'strades6ce')]
    data = ((x[:60], y[:60]), (x[:1], y[:1]))

    def stack(graphs):
        monkeypatch.setenv('LOLIP_GRAPHS', '1' if graphs else '0')
        return run_steps(st.train_stacked_steps(cfgs, device=DEVICE, data=data))
    eager, graph = stack(False), stack(True)
    for (m1, h1), (m2, h2) in zip(eager, graph):
        assert [h['lr'] for h in h2] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert torch.allclose(p, q, rtol=0, atol=1e-4), float((p - q).abs().max())
        assert [h['acc'] for h in h1] == [h['acc'] for h in h2]
        assert [h['loss'] for h in h2] == pytest.approx([h['loss'] for h in h1], abs=1e-4)
