"""Small helpers shared by the book's executed chapters: where the repository is, the stored separation results, and
tables with a numbered caption (a MyST `{table}` directive printed as Markdown, which the book parses as MyST)."""
import json
import math
from pathlib import Path

from IPython.display import Markdown, display

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / 'settings.ini').exists())
RESULTS = ROOT / 'results'
DATASETS = {'fashion_mnist': 'Fashion-MNIST', 'mnist': 'MNIST', 'cifar10': 'CIFAR-10', 'svhn': 'SVHN',
            'restricted_imagenet': 'Restricted ImageNet'}
NORMS = {'inf': r'$\ell_\infty$', '2': r'$\ell_2$'}


def dataset_label(name):
    "The usual spelling of a dataset's name (`fashion_mnist` -> Fashion-MNIST)."
    return DATASETS.get(name, name)


def fmt(v, digits=3):
    "A number for a table cell: `digits` significant digits, an empty cell for a missing value."
    if v is None or (isinstance(v, float) and math.isnan(v)): return ''
    if isinstance(v, (int,)) and not isinstance(v, bool): return f'{v:,}'
    if isinstance(v, float): return f'{v:.{digits}g}' if abs(v) < 10 ** digits else f'{v:,.0f}'
    return str(v)


def table_md(rows, columns, caption, name, align=None):
    "A MyST `{table}` directive (numbered, captioned, referable as `name`) from a list of dicts and column titles."
    esc = lambda s: str(s).replace('|', r'\|').replace('\n', ' ')
    head = '| ' + ' | '.join(esc(c) for c in columns) + ' |'
    sep = '|' + '|'.join(align or ['---'] * len(columns)) + '|'
    body = ['| ' + ' | '.join(esc(r.get(c, '')) for c in columns) + ' |' for r in rows]
    # a colon fence: a backtick fence may not carry backticks (roles, code) in its caption line
    return '\n'.join([f':::{{table}} {caption}', f':name: {name}', '', head, sep, *body, ':::'])


def show_table(rows, columns, caption, name, align=None):
    "Display `table_md(...)`: a numbered table with a caption in the built book."
    display(Markdown(table_md(rows, columns, caption, name, align)))


def separation_results():
    "Every stored `results/separation/<dataset>-<norm>/separation.json`, with its folder and the distances if stored."
    out = []
    for f in sorted((RESULTS / 'separation').glob('*/separation.json')):
        d = json.loads(f.read_text())
        d['folder'] = f.parent
        d['norm'] = str(d.get('norm', f.parent.name.rsplit('-', 1)[-1]))
        d.setdefault('dataset', f.parent.name.rsplit('-', 1)[0])
        out.append(d)
    return out


def linf_ratio(d, split='train_train', key='min'):
    "A split's statistic of an l-inf separation result divided by 2 eps (the diameter the theorem needs); nan otherwise."
    s, eps = d.get(split, {}), d.get('eps')
    v = s.get(key) if key != 'median' else s.get('percentiles', {}).get('50')
    if d['norm'] != 'inf' or not eps or v is None: return float('nan')
    return v / (2 * eps)


def plot_separation(d, ax, bins=60):
    "Histogram of a separation result's train-train and test-train distances; the 2 eps line only for l-inf."
    import numpy as np
    f = d['folder'] / 'distances.npz'
    if not f.exists(): return False
    z = np.load(f)
    for split, label in (('train_train', 'train-train'), ('test_train', 'test-train')):
        if split in z: ax.hist(z[split], bins=bins, density=True, alpha=0.55, label=label)
    norm = r'$\ell_\infty$' if d['norm'] == 'inf' else r'$\ell_2$'
    if d['norm'] == 'inf' and d.get('eps'):
        ax.axvline(2 * d['eps'], color='k', ls='--', lw=1, label=rf"$2\epsilon$ = {2 * d['eps']:g}")
        ax.set_xlim(left=0)
    ax.set(xlabel=f'{norm} distance to the nearest training image of another class', ylabel='density',
           title=f"{dataset_label(d['dataset'])}, {norm}")
    ax.legend(fontsize=8)
    return True
