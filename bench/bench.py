"""Benchmark: the project's training step and evaluation against a plain baseline written the way the original works.

The baseline uses the same loss functions and attacks, so only the pipeline differs: a worker DataLoader feeding
CPU batches, a host synchronisation (`loss.item()`) every step, and batch-16 evaluation. Prints seconds per epoch
and per evaluation with the ratios, and writes bench/results/<device>-<date>.json.

    python bench/bench.py                          # all ten methods, sizes chosen for the device
    python bench/bench.py --methods ce strades6ce --n-train 2048 --n-eval 1000
    python bench/bench.py --quick-preset           # also time the whole `quick` preset both ways (slow on CPU)
"""
import argparse, json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from lolip_nb.core import get_device, device_name, provenance, seed_all, atomic_write_json
from lolip_nb.config import parse_model_name
from lolip_nb.data import load_dataset
from lolip_nb.defenses import LOSSES
from lolip_nb.models import build_model
from lolip_nb.train import train, _optimizer
from lolip_nb.attacks import pgd, attack_dataset
from lolip_nb.lipschitz import local_lipschitz
from lolip_nb.runner import TEN_METHODS, QUICK

REPO = Path(__file__).resolve().parent.parent


def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def plain_epoch(cfg, dev, x, y, workers):
    "One epoch the original's way: worker loader, batches copied to the device, loss.item() every step."
    seed_all(cfg.seed)
    model = build_model(cfg.arch, 1, 10, 28).to(dev)
    opt = _optimizer(cfg, model.parameters())
    loss_fn, params, reduction = LOSSES[cfg.loss]
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=False)
    _sync(dev); t0 = time.perf_counter()
    total = 0.0
    for xb, yb in loader:
        xb, yb = xb.to(dev), yb.to(dev)
        model.train()
        loss = loss_fn(model, xb, yb, cfg.eps, cfg.norm, reduction, **params)
        opt.zero_grad(); loss.backward(); opt.step()
        total += loss.item()
    _sync(dev)
    return time.perf_counter() - t0


def ours_epoch(cfg, dev, x, y):
    "One epoch of lolip_nb.train (data on the device, no per-step host sync); the time it records for the epoch."
    _, hist = train(cfg.__class__.from_dict({**cfg.to_dict(), 'epochs': 1, 'milestones': []}), device=dev, progress=False,
                    data=((x, y), (x[:1], y[:1])))
    return hist[0]['seconds']


def plain_eval(model, dev, x, y, eps, workers):
    "PGD-10 and the Lipschitz estimate the original's way: batch 16 from a worker loader, a host sync per batch."
    loader = DataLoader(TensorDataset(x, y), batch_size=16, num_workers=workers)
    _sync(dev); t0 = time.perf_counter()
    correct = 0
    for xb, yb in loader:
        xb, yb = xb.to(dev), yb.to(dev)
        adv = pgd(model, xb, yb, eps)
        correct += (model(adv).argmax(1) == yb).sum().item()
    _sync(dev); t1 = time.perf_counter()
    lips = []
    for xb, _ in loader:
        _, per = local_lipschitz(model, xb.to(dev), eps, batch_size=16)
        lips.append(per.mean().item())
    _sync(dev)
    return t1 - t0, time.perf_counter() - t1


def ours_eval(model, dev, x, y, eps):
    "The same work through lolip_nb: data on the device, batch size chosen from free memory."
    xd, yd = x.to(dev), y.to(dev)
    _sync(dev); t0 = time.perf_counter()
    attack_dataset(model, xd, yd, eps, progress=False)
    _sync(dev); t1 = time.perf_counter()
    local_lipschitz(model, xd, eps)
    _sync(dev)
    return t1 - t0, time.perf_counter() - t1


def quick_preset_walltime(jobs):
    "Wall time of `lolip grid quick` into a fresh folder."
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / 'lolip'), 'grid', 'quick', '--root', d, '--jobs', str(jobs),
                        '--execute', 'process'], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--methods', nargs='+', default=list(TEN_METHODS))
    ap.add_argument('--n-train', type=int, default=None, help='training images per timed epoch (default: 1024 on CPU, 60000 on GPU)')
    ap.add_argument('--n-eval', type=int, default=None, help='test images to evaluate (default: 1000 on CPU, 10000 on GPU)')
    ap.add_argument('--workers', type=int, default=2, help="the baseline loader's worker processes")
    ap.add_argument('--device', default='auto')
    ap.add_argument('--quick-preset', action='store_true', help='also time the whole quick preset (minutes on CPU)')
    ap.add_argument('--out', default=str(REPO / 'bench' / 'results'))
    a = ap.parse_args(argv)
    dev = get_device(a.device)
    gpu = dev.type == 'cuda'
    n_train = a.n_train or (60000 if gpu else 1024)
    n_eval = a.n_eval or (10000 if gpu else 1000)
    x, y = load_dataset('fashion_mnist', 'train', subset=n_train if n_train < 60000 else None)
    xt, yt = load_dataset('fashion_mnist', 'test', subset=n_eval if n_eval < 10000 else None)
    print(f'device: {device_name(dev)}; torch {torch.__version__}; threads {torch.get_num_threads()}; '
          f'{n_train} training images per epoch, {n_eval} evaluated')
    rows = []
    for m in a.methods:
        cfg = parse_model_name(f'{m}-tor-CNN001', 'fashion_mnist')
        plain = plain_epoch(cfg, dev, x, y, a.workers)
        ours = ours_epoch(cfg, dev, x.to(dev), y.to(dev))
        scale = 60000 / n_train
        rows.append(dict(method=m, plain_s_per_epoch=plain * scale, ours_s_per_epoch=ours * scale, speedup=plain / ours))
        print(f'  train {m:12s} plain {plain * scale:8.1f} s/epoch   ours {ours * scale:8.1f} s/epoch   x{plain / ours:5.2f}'
              + ('' if n_train == 60000 else f'   (measured on {n_train}, scaled to 60,000)'))
    seed_all(0)
    model = build_model('CNN001', 1, 10, 28).to(dev).eval()
    p_pgd, p_lip = plain_eval(model, dev, xt, yt, 0.1, a.workers)
    o_pgd, o_lip = ours_eval(model, dev, xt, yt, 0.1)
    scale = 10000 / n_eval
    ev = dict(plain_pgd_s=p_pgd * scale, ours_pgd_s=o_pgd * scale, plain_lip_s=p_lip * scale, ours_lip_s=o_lip * scale,
              pgd_speedup=p_pgd / o_pgd, lip_speedup=p_lip / o_lip)
    print(f'  eval  PGD-10     plain {ev["plain_pgd_s"]:8.2f} s   ours {ev["ours_pgd_s"]:8.2f} s   x{ev["pgd_speedup"]:5.2f}   (per 10,000 points)')
    print(f'  eval  Lipschitz  plain {ev["plain_lip_s"]:8.2f} s   ours {ev["ours_lip_s"]:8.2f} s   x{ev["lip_speedup"]:5.2f}   (per 10,000 points)')
    out = dict(device=device_name(dev), n_train=n_train, n_eval=n_eval, workers=a.workers, train=rows, evaluation=ev,
               provenance=provenance(dev, 'python ' + ' '.join(['bench/bench.py', *(argv or sys.argv[1:])])))
    if a.quick_preset:
        out['quick_preset_s'] = quick_preset_walltime(2)
        print(f'  quick preset (lolip grid quick --jobs 2): {out["quick_preset_s"]:.0f} s wall')
    tag = re.sub(r'[^A-Za-z0-9]+', '-', device_name(dev)).strip('-')[:40]
    path = Path(a.out) / f'{tag}-{out["provenance"]["date"][:10]}.json'
    atomic_write_json(path, out)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
