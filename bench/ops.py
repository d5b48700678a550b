"""Count the operations of one training step per method (a proxy for GPU kernel launches), on the CPU profiler.

At batch 64 a CNN001 step on a GPU is bound by how many small kernels it launches, so the count says where a
fused or captured step has room. Views and allocations are not counted; on a GPU most remaining operations
launch one kernel (the CPU's convolution internals add a few that a GPU does not have).

    python bench/ops.py                       # the ten methods of the paper's table
    python bench/ops.py strades6ce advce
"""
import collections, sys

import torch
from torch.profiler import profile

from lolip_nb.config import parse_model_name
from lolip_nb.models import build_model
from lolip_nb.runner import TEN_METHODS
from lolip_nb.train import _make_step, _metrics, _optimizer

NOT_KERNELS = {'aten::empty', 'aten::view', 'aten::as_strided', 'aten::empty_strided', 'aten::detach', 'aten::t',
               'aten::transpose', 'aten::reshape', 'aten::_reshape_alias', 'aten::expand', 'aten::unsqueeze',
               'aten::resolve_conj', 'aten::resolve_neg', 'aten::permute', 'aten::set_', 'aten::result_type',
               'aten::lift_fresh', 'aten::alias', 'aten::squeeze', 'aten::flatten', 'aten::slice', 'aten::select',
               'aten::_unsafe_view', 'aten::is_nonzero', 'aten::item', 'aten::_local_scalar_dense', 'aten::empty_like',
               'aten::unflatten', 'aten::contiguous', 'aten::as_strided_', 'aten::resize_',  # metadata only
               'aten::dropout'}  # dropout in eval mode is the identity


def count(loss: str) -> collections.Counter:
    "Leaf aten operations of one training step of `loss` with CNN001 at batch 64 (after one warm-up step)."
    cfg = parse_model_name(f'{loss}-tor-CNN001', 'fashion_mnist')
    model = build_model('CNN001')
    opt = _optimizer(cfg, model.parameters())
    step = _make_step(cfg, model, opt, _metrics('cpu'))
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    step(x, y)
    with profile() as prof: step(x, y)
    ops = collections.Counter()
    for e in prof.events():
        if e.name.startswith('aten::') and not any(c.name.startswith('aten::') for c in e.cpu_children):
            ops[e.name] += 1
    return collections.Counter({k: v for k, v in ops.items() if k not in NOT_KERNELS})


if __name__ == '__main__':
    for loss in sys.argv[1:] or TEN_METHODS:
        ops = count(loss)
        top = ', '.join(f'{k[6:]} {v}' for k, v in ops.most_common(6))
        print(f'{loss:12s} {sum(ops.values()):4d} operations per step   ({top}, ...)')
