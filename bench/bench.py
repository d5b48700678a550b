"""Benchmark: the project's training step and evaluation against a plain baseline written the way the original works.

The baseline uses the same loss functions and attacks, so only the pipeline differs: a worker DataLoader feeding
CPU batches, a host synchronisation (`loss.item()`) every step, PyTorch's default CUDA settings, and batch-16
evaluation. `ours` is `lolip_nb.train` / `attack_dataset` / `local_lipschitz` as a run uses them (on a GPU: data on
the device, TF32, cuDNN autotuning, the training step replayed as a CUDA graph); `ours_eager` is the same without
CUDA graphs. Prints seconds per epoch and per evaluation with the ratios, and writes
bench/results/<device>-<date>.json after every section, so an interrupted run keeps what it measured.

    python bench/bench.py                          # all ten methods, sizes chosen for the device
    python bench/bench.py --methods ce strades6ce --n-train 2048 --n-eval 1000
    python bench/bench.py --quick-preset           # also the whole `quick` preset, plain path vs ours (slow on CPU)
    python bench/bench.py --stacked                # also the stackable methods one at a time and as one stack
    python bench/bench.py --streams-epochs 2       # GPU: the ten-method `fashion` grid, all jobs at once on one GPU
"""
import argparse, json, os, re, subprocess, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from lolip_nb.core import get_device, device_name, provenance, seed_all, atomic_write_json, native_bf16
from lolip_nb.config import Config, parse_model_name
from lolip_nb.data import load_dataset
from lolip_nb.defenses import method_loss
from lolip_nb.models import build_model
from lolip_nb.train import train, load_data, _optimizer
from lolip_nb.attacks import pgd, attack_dataset, auto_batch_size
from lolip_nb.evaluate import accuracy
from lolip_nb.lipschitz import local_lipschitz
from lolip_nb.runner import TEN_METHODS, QUICK, grid_jobs
from lolip_nb.tables import grid_epoch_estimate

REPO = Path(__file__).resolve().parent.parent


def _sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


@contextmanager
def _cuda_defaults(dev):
    "PyTorch's default CUDA settings (TF32 off for matrix products, no cuDNN autotuning), as the original ran."
    if dev.type != 'cuda': yield; return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = False, True, False
    try: yield
    finally: torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def plain_epochs(cfg, dev, x, y, workers, epochs=1, sched=True):
    "Train the original's way: worker loader, batches copied to the device, loss.item() every step. Returns (model, s/epoch list)."
    seed_all(cfg.seed)
    model = build_model(cfg.arch, 1, 10, 28).to(dev)
    opt = _optimizer(cfg, model.parameters())
    lr_sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), gamma=0.1)
    loss_fn, kw = method_loss(cfg.loss, cfg.form)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    next(iter(loader))  # start the workers before the clock: in a short timed epoch their start-up would dominate
    times = []
    with _cuda_defaults(dev):
        for _ in range(epochs):
            _sync(dev); t0 = time.perf_counter()
            total = 0.0
            for xb, yb in loader:
                xb, yb = xb.to(dev), yb.to(dev)
                model.train()
                loss = loss_fn(model, xb, yb, cfg.eps, cfg.norm, **kw)
                opt.zero_grad(); loss.backward(); opt.step()
                total += loss.item()
            if sched: lr_sched.step()
            _sync(dev); times.append(time.perf_counter() - t0)
    return model.eval(), times


def ours_epochs(cfg, dev, x, y, epochs=1, graphs=None):
    "Epochs of lolip_nb.train (data on the device, no per-step host sync, CUDA graphs on a GPU): the seconds it records."
    one = Config.from_dict({**cfg.to_dict(), 'epochs': epochs, 'milestones': ()})
    _, hist = train(one, device=dev, progress=False, data=((x, y), (x[:1], y[:1])), graphs=graphs)
    return [h['seconds'] for h in hist]


def plain_eval(model, dev, x, y, eps, workers):
    "PGD-10 and the Lipschitz estimate the original's way: batch 16 from a worker loader, a host sync per batch."
    loader = DataLoader(TensorDataset(x, y), batch_size=16, num_workers=workers)
    with _cuda_defaults(dev):
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
    return t1 - t0, time.perf_counter() - t1, correct / len(x), sum(lips) / len(lips)


def ours_eval(model, dev, x, y, eps, repeats=1):
    "The same work through lolip_nb: data on the device, batch size chosen from free memory. Median of `repeats`."
    xd, yd = x.to(dev), y.to(dev)
    pgds, lips = [], []
    for _ in range(repeats):
        _sync(dev); t0 = time.perf_counter()
        _, broken = attack_dataset(model, xd, yd, eps, progress=False)
        _sync(dev); t1 = time.perf_counter()
        lip, _ = local_lipschitz(model, xd, eps)
        _sync(dev); pgds.append(t1 - t0); lips.append(time.perf_counter() - t1)
    med = lambda v: sorted(v)[len(v) // 2]
    return med(pgds), med(lips), 1 - broken.double().mean().item(), lip


def plain_quick_preset(dev, workers):
    "The twelve `quick` runs one after the other the plain way: plain training, then the same evaluation as ours (every metric, AutoAttack and the strong search included) at the original's batch 16."
    from lolip_nb.experiment import experiment_config
    from lolip_nb.evaluate import evaluate
    _, jobs = grid_jobs('quick')
    t0 = time.perf_counter()
    for j in jobs:
        cfg = experiment_config(**j.params)
        data = load_data(cfg)
        model, _ = plain_epochs(cfg, dev, *data[0], workers, epochs=cfg.epochs)
        seed_all(cfg.seed)
        evaluate(model, data[0], data[1], eps=cfg.eps, norm=cfg.norm, attack=cfg.attack, autoattack=cfg.autoattack,
                 n_strong=cfg.n_strong, batch_size=16, device=dev)
    return time.perf_counter() - t0


def ours_quick_preset(jobs, execute='process', device='cpu', precision='fp32'):
    "Wall time of `lolip grid quick` into a fresh folder; with `precision` bf16, of the same jobs with bf16 training and attacks."
    with tempfile.TemporaryDirectory() as d:
        grid = 'quick'
        if precision != 'fp32':
            _, js = grid_jobs('quick')
            grid = str(Path(d) / f'quick-{precision}.json')
            Path(grid).write_text(json.dumps(dict(name=f'quick-{precision}', jobs=[
                dict(kind=j.kind, params={**j.params, 'precision': precision, 'eval_precision': precision}) for j in js])))
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / 'lolip'), 'grid', grid, '--root', d, '--jobs', str(jobs),
                        '--execute', execute, '--device', device], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


def subset_grid(preset, n_train, n_test, path, original_only=False):
    "Write a grid file of `preset`'s jobs (with `original_only`, not the `-paper` forms) on `n_train` training and `n_test` test images; returns its path."
    name, jobs = grid_jobs(preset)
    if original_only: jobs = [j for j in jobs if not j.params['model'].endswith('-paper')]
    spec = dict(name=f'{name}-n{n_train}', jobs=[dict(kind=j.kind, params={**j.params, 'n_train': n_train, 'n_test': n_test})
                                                 for j in jobs])
    Path(path).write_text(json.dumps(spec))
    return str(path)


def streams_grid(dev, epochs, jobs, out_root, grid='fashion'):
    "A grid (the ten-method `fashion` one) capped at `epochs`, `jobs` at once on one GPU (execute='streams'); returns timings."
    from lolip_nb.runner import run_grid
    t0 = time.perf_counter()
    outcomes = run_grid(grid, out_root, jobs=jobs, execute='streams', device=str(dev), epochs=epochs, force=True,
                        command=f'python bench/bench.py --streams-epochs {epochs} --streams-jobs {jobs}')
    wall = time.perf_counter() - t0
    runs = []
    for o in outcomes:
        res = json.loads((o.folder / 'result.json').read_text()) if o.status == 'ran' else {}
        runs.append(dict(method=o.job.params['model'].split('-')[0], status=o.status, error=o.error, seconds=o.seconds,
                         epoch_s=res.get('timings', {}).get('epoch_s'), train_s=res.get('timings', {}).get('train_s'),
                         evaluate_s=res.get('timings', {}).get('evaluate_s'),
                         metrics=res.get('metrics')))
    return dict(epochs=epochs, jobs=jobs, wall_s=wall, runs=runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--methods', nargs='+', default=list(TEN_METHODS))
    ap.add_argument('--n-train', type=int, default=None, help='images per timed epoch of ours (default: 1024 on CPU, 60000 on GPU)')
    ap.add_argument('--n-plain', type=int, default=None, help='images per timed epoch of the baselines (default: n-train on CPU, 6400 on GPU)')
    ap.add_argument('--n-eval', type=int, default=None, help='test images to evaluate (default: 1000 on CPU, 10000 on GPU)')
    ap.add_argument('--n-plain-eval', type=int, default=None, help='test images the plain evaluation times (default: n-eval on CPU, 2000 on GPU)')
    ap.add_argument('--workers', type=int, default=2, help="the baseline loader's worker processes")
    ap.add_argument('--device', default='auto')
    ap.add_argument('--skip-train', action='store_true')
    ap.add_argument('--quick-preset', action='store_true', help='also time the whole quick preset, plain path and ours (minutes on CPU)')
    ap.add_argument('--streams-epochs', type=int, default=0, help='GPU: run the fashion grid for this many epochs, all jobs at once')
    ap.add_argument('--streams-jobs', type=int, default=10)
    ap.add_argument('--streams-grid', default='fashion', help='the grid the streams section runs (a preset or a grid file)')
    ap.add_argument('--streams-n-train', type=int, default=None, help="run the streams grid's jobs on this many training images")
    ap.add_argument('--streams-n-test', type=int, default=2000)
    ap.add_argument('--streams-original-only', action='store_true', help="the streams grid without its '-paper' jobs "
                    "(fashion: the ten methods as the published code trains them)")
    ap.add_argument('--streams-compare', action='store_true', help='also run the streams grid one job at a time, for the ratio')
    ap.add_argument('--skip-eval', action='store_true')
    ap.add_argument('--stacked', action='store_true', help='also time the stackable methods one at a time and as one stack')
    ap.add_argument('--stacked-n-train', type=int, default=None, help='images per timed epoch of the stacked section '
                    '(default 12,800 on GPU, 256 on CPU; scaled to 60,000)')
    ap.add_argument('--streams-root', default=None, help='where the streams grid writes its results (default: a temporary folder)')
    ap.add_argument('--out', default=str(REPO / 'bench' / 'results'))
    ap.add_argument('--tag', default='', help='a suffix for the result file name (e.g. streams)')
    a = ap.parse_args(argv)
    dev = get_device(a.device)
    gpu = dev.type == 'cuda'
    n_train = a.n_train or (60000 if gpu else 1024)
    n_plain = a.n_plain or (min(6400, n_train) if gpu else n_train)
    n_eval = a.n_eval or (10000 if gpu else 1000)
    n_plain_eval = a.n_plain_eval or (min(2000, n_eval) if gpu else n_eval)
    x, y = load_dataset('fashion_mnist', 'train', subset=n_train if n_train < 60000 else None)
    xt, yt = load_dataset('fashion_mnist', 'test', subset=n_eval if n_eval < 10000 else None)
    print(f'device: {device_name(dev)}; torch {torch.__version__}; threads {torch.get_num_threads()}; '
          f'ours: {n_train} training images per epoch, {n_eval} evaluated; plain: {n_plain} and {n_plain_eval} '
          f'(all times scaled to 60,000 and 10,000)', flush=True)
    out = dict(device=device_name(dev), n_train=n_train, n_plain=n_plain, n_eval=n_eval, n_plain_eval=n_plain_eval,
               workers=a.workers, train=[], provenance=provenance(dev, 'python ' + ' '.join(['bench/bench.py', *(argv or sys.argv[1:])])))
    tag = re.sub(r'[^A-Za-z0-9]+', '-', device_name(dev)).strip('-')[:40]
    path = Path(a.out) / f'{tag}-{out["provenance"]["date"][:10]}{"-" + a.tag if a.tag else ""}.json'
    save = lambda: atomic_write_json(path, out)

    xd, yd = x.to(dev), y.to(dev)
    for m in ([] if a.skip_train else a.methods):
        cfg = parse_model_name(f'{m}-tor-CNN001', 'fashion_mnist')
        _, plain = plain_epochs(cfg, dev, x[:n_plain], y[:n_plain], a.workers, sched=False)
        row = dict(method=m, plain_s_per_epoch=plain[0] * 60000 / n_plain)
        if gpu:  # eager without graphs, then ours: two epochs, the second is the steady state (cuDNN tuned, graph warm)
            eager = ours_epochs(cfg, dev, xd[:n_plain], yd[:n_plain], graphs=False)
            row['ours_eager_s_per_epoch'] = eager[0] * 60000 / n_plain
            ours = ours_epochs(cfg, dev, xd, yd, epochs=2)
            row.update(ours_first_epoch_s=ours[0] * 60000 / n_train, ours_s_per_epoch=ours[1] * 60000 / n_train)
        else:
            ours = ours_epochs(cfg, dev, xd, yd)
            row['ours_s_per_epoch'] = ours[0] * 60000 / n_train
        row['speedup'] = row['plain_s_per_epoch'] / row['ours_s_per_epoch']
        out['train'].append(row)
        print(f"  train {m:12s} plain {row['plain_s_per_epoch']:8.2f} s/epoch"
              + (f"   eager {row['ours_eager_s_per_epoch']:7.2f}" if gpu else '')
              + f"   ours {row['ours_s_per_epoch']:7.2f} s/epoch   x{row['speedup']:5.2f}", flush=True)
        save()

    if not a.skip_eval: evaluation_section(a, dev, out, xt, yt, n_eval, n_plain_eval, gpu, save)
    if a.streams_epochs: streams_section(a, dev, out, save)
    if a.quick_preset: quick_section(a, dev, out, save)
    if a.stacked: stacked_section(a, dev, out, xd, yd, save)
    print(f'wrote {path}')


def stacked_section(a, dev, out, x, y, save):
    """The stackable methods of the fashion grid (Natural apart: it stacks with Natural only) trained one at a time and
    as one stack, on the same images: steady-state seconds per epoch (the second of two), scaled to 60,000 images."""
    from lolip_nb.stacked import train_stacked_steps, why_not_stacked
    from lolip_nb.train import run_steps
    n = min(a.stacked_n_train or (12800 if dev.type == 'cuda' else 256), len(x))
    xs, ys, scale = x[:n], y[:n], 60000 / n
    cfgs = [Config.from_dict({**parse_model_name(f'{m}-tor-CNN001', 'fashion_mnist').to_dict(), 'epochs': 2, 'milestones': ()})
            for m in TEN_METHODS if m != 'ce']
    cfgs = [c for c in cfgs if why_not_stacked(c) is None]
    rows = []
    for c in cfgs:
        _, hist = train(c, device=dev, progress=False, data=((xs, ys), (xs[:1], ys[:1])))
        rows.append(dict(method=c.loss, separate_s_per_epoch=hist[-1]['seconds'] * scale))
    res = run_steps(train_stacked_steps(cfgs, device=dev, data=((xs, ys), (xs[:1], ys[:1]))))
    stacked = res[0][1][-1]['seconds'] * scale
    separate = sum(r['separate_s_per_epoch'] for r in rows)
    out['stacked'] = dict(n_train=n, methods=[r['method'] for r in rows], runs=rows, stacked_s_per_epoch=stacked,
                          separate_sum_s_per_epoch=separate, speedup=separate / stacked,
                          note='one epoch of all these jobs: one after the other (separate) vs one stack; fp32, graphs on CUDA')
    for r in rows: print(f"  separate {r['method']:12s} {r['separate_s_per_epoch']:8.2f} s/epoch", flush=True)
    print(f"  stacked  {len(rows)} jobs      {stacked:8.2f} s/epoch of all of them, against {separate:.2f} one after the "
          f"other: x{separate / stacked:.2f}", flush=True)
    save()


def evaluation_section(a, dev, out, xt, yt, n_eval, n_plain_eval, gpu, save):
    seed_all(0)
    model = build_model('CNN001', 1, 10, 28).to(dev).eval()
    p_pgd, p_lip, p_acc, p_l = plain_eval(model, dev, xt[:n_plain_eval], yt[:n_plain_eval], 0.1, a.workers)
    ours_eval(model, dev, xt, yt, 0.1)  # warm-up: cuDNN tunes the evaluation shapes once
    o_pgd, o_lip, o_acc, o_l = ours_eval(model, dev, xt, yt, 0.1, repeats=3 if gpu else 1)
    sp, so = 10000 / n_plain_eval, 10000 / n_eval
    ev = dict(plain_pgd_s=p_pgd * sp, ours_pgd_s=o_pgd * so, plain_lip_s=p_lip * sp, ours_lip_s=o_lip * so,
              pgd_speedup=p_pgd * sp / (o_pgd * so), lip_speedup=p_lip * sp / (o_lip * so),
              batch_size=auto_batch_size(model, xt, dev), ours_robust_acc=o_acc, ours_lip=o_l)
    out['evaluation'] = ev
    print(f'  eval  PGD-10     plain {ev["plain_pgd_s"]:8.2f} s   ours {ev["ours_pgd_s"]:8.3f} s   x{ev["pgd_speedup"]:6.1f}   (per 10,000 points; batch {ev["batch_size"]})')
    print(f'  eval  Lipschitz  plain {ev["plain_lip_s"]:8.2f} s   ours {ev["ours_lip_s"]:8.3f} s   x{ev["lip_speedup"]:6.1f}', flush=True)
    save()


def streams_section(a, dev, out, save):
    root = Path(a.streams_root or tempfile.mkdtemp(prefix='lolip-streams-')); root.mkdir(parents=True, exist_ok=True)
    grid, n = a.streams_grid, a.streams_n_train
    if n: grid = subset_grid(grid, n, a.streams_n_test, root / 'grid.json', a.streams_original_only)
    scale = 60000 / n if n else 1.0
    out['streams'] = []
    for jobs in ([1] if a.streams_compare else []) + [a.streams_jobs]:
        s = streams_grid(dev, a.streams_epochs, jobs, root / f'jobs{jobs}', grid)
        s.update(n_train=n, scale_to_60000=scale)
        if (g := grid_epoch_estimate(s)) is not None:  # the rule is explained in lolip_nb.tables
            s.update(grid_epoch_s_at_60000=g, fashion_160_epochs_estimate_min=160 * g / 60)
        out['streams'].append(s)
        print(f"  streams: {a.streams_grid} ({n or 'the grid its own'} training images), {a.streams_epochs} epochs, {jobs} at a time: "
              f"{s['wall_s']:.1f} s wall" + (f"; one epoch of the grid on 60,000 images ~ {s['grid_epoch_s_at_60000']:.1f} s, "
              f"160 epochs ~ {s['fashion_160_epochs_estimate_min']:.0f} min of training" if 'grid_epoch_s_at_60000' in s else ''),
              flush=True)
        for r in s['runs']:
            print(f"    {r['method']:12s} {r['status']:6s} epochs {r['epoch_s']} evaluate {r['evaluate_s']}"
                  + (f" ERROR {r['error']}" if r['error'] else ''))
        save()


def quick_section(a, dev, out, save):
    "The whole quick preset three ways, side by side in one run: plain, ours in fp32, ours with bf16 training and attacks."
    isa = torch.backends.cpu.get_cpu_capability() if dev.type == 'cpu' else None
    out['quick_preset'] = q = dict(work='the same: training, then every metric (AutoAttack and the strong search '
                                        'included); plain evaluates at batch 16', cpu_isa=isa, native_bf16=native_bf16(dev))
    q['plain_s'] = plain_quick_preset(dev, a.workers)
    print(f"  quick preset, plain path (sequential): {q['plain_s']:.0f} s", flush=True)
    save()
    q['ours_s'] = ours_quick_preset(2, 'process', str(dev))
    q['speedup'] = q['plain_s'] / q['ours_s']
    print(f"  quick preset, lolip grid quick --jobs 2 --execute process: {q['ours_s']:.0f} s   x{q['speedup']:.2f}", flush=True)
    save()
    q['ours_bf16_s'] = ours_quick_preset(2, 'process', str(dev), precision='bf16')
    q['speedup_bf16'] = q['plain_s'] / q['ours_bf16_s']
    print(f"  quick preset, the same in bf16 (training and attacks): {q['ours_bf16_s']:.0f} s   x{q['speedup_bf16']:.2f}")
    save()


if __name__ == '__main__':
    main()
