"""bf16 autocast in the evaluation's ascents: what it does to PGD and to the Lipschitz estimates, against the seed spread.

Trains the `quick` preset's Natural and TRADES(6) models (fp32), then measures on the first 500 test points, with three
seeds each, in float32 and with the ascents under bf16 autocast (the reported values are float32 in both): PGD-10
robust accuracy, the Lipschitz estimate (ascent) and the original's estimate (descent). Writes
bench/results/studies/bf16-study-<device>-<date>.json with provenance.

    python bench/bf16_study.py
"""
import argparse, datetime, json, re, statistics, time
from pathlib import Path

import torch

from lolip_nb.core import provenance, device_name, native_bf16, with_precision, atomic_write_json, seed_all
from lolip_nb.experiment import experiment_config
from lolip_nb.runner import QUICK
from lolip_nb.train import train, load_data
from lolip_nb.attacks import attack_dataset
from lolip_nb.lipschitz import local_lipschitz, local_lipschitz_original

REPO = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--methods', nargs='+', default=['ce', 'strades6ce'])
    ap.add_argument('--n', type=int, default=500, help='test points measured')
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'studies'))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for m in a.methods:
        cfg = experiment_config(f"{m}-tor-CNN001{QUICK['hyper']}", 'fashion_mnist', eps=0.1, epochs=QUICK['epochs'],
                                n_train=QUICK['n_train'], n_test=QUICK['n_test'], milestones=QUICK['milestones'])
        data = load_data(cfg)
        model, _ = train(cfg, device='cpu', progress=False, data=data[0])
        x, y = data[1][0][:a.n], data[1][1][:a.n]
        for precision in ('fp32', 'bf16'):
            net = with_precision(model, precision)
            for seed in range(1, a.seeds + 1):
                seed_all(seed); t0 = time.perf_counter()
                _, broken = attack_dataset(net, x, y, cfg.eps, progress=False)
                t1 = time.perf_counter()
                lip = local_lipschitz(net, x, cfg.eps, progress=False)[0]
                lip_o = local_lipschitz_original(net, x, cfg.eps, progress=False)[0]
                rows.append(dict(method=m, precision=precision, seed=seed, pgd_robust=1 - broken.double().mean().item(),
                                 lip=lip, lip_original=lip_o, pgd_s=t1 - t0, lip_s=time.perf_counter() - t1))
                print(rows[-1], flush=True)
    summary = {}
    for m in a.methods:
        for k in ('pgd_robust', 'lip', 'lip_original'):
            v = {p: [r[k] for r in rows if r['method'] == m and r['precision'] == p] for p in ('fp32', 'bf16')}
            spread = max(v['fp32']) - min(v['fp32'])
            diff = statistics.mean(v['bf16']) - statistics.mean(v['fp32'])
            summary[f'{m}/{k}'] = dict(fp32_mean=statistics.mean(v['fp32']), bf16_mean=statistics.mean(v['bf16']),
                                       diff=diff, rel_diff=diff / statistics.mean(v['fp32']), fp32_seed_spread=spread,
                                       within_spread=abs(diff) <= spread)
    dev = 'cpu'
    out = dict(device=device_name(dev), native_bf16=native_bf16(dev), n_test=a.n, seeds=a.seeds, threads=1, rows=rows,
               summary=summary, provenance=provenance(dev))
    slug = re.sub(r'[^A-Za-z0-9]+', '-', device_name(dev)).strip('-')
    path = Path(a.out) / f"bf16-study-{slug}-{datetime.date.today().isoformat()}.json"
    atomic_write_json(path, out)
    print(json.dumps(summary, indent=1))
    print(f'written: {path}')


if __name__ == '__main__':
    main()
