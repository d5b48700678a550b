"""Copy the library notebooks and the stored experiment runs into book/api/ (git-ignored) in the form the book shows.

Library notebooks (nbs/NN_*.ipynb): nbdev's scaffolding (`#| default_exp`, `#| hide` cells, `nbdev_export()` calls,
`#|` directives) is left out, each exported public function or class gets its signature and documentation after the
cell that defines it, and code cells are tagged as library source or as checks. The notebooks in nbs/ are not touched.

Stored runs (results/**/experiment.ipynb): each page is titled by method, dataset and preset from the `result.json`
next to it, opens with its headline metrics, and its training-history figure gets a numbered caption; warnings that
name the build machine's folders are left out. Run from the repository root (book/build.sh does)."""
import ast, copy, importlib, inspect, json, re, shutil, sys, uuid
from pathlib import Path

API = Path('book/api')
DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)')
MACHINE_PATH = re.compile(r'(/(?:root|home/[^/\s]+|Users/[^/\s]+)/\S*|\S*site-packages/\S*)')
DATASETS = {'fashion_mnist': 'Fashion-MNIST', 'mnist': 'MNIST', 'cifar10': 'CIFAR-10', 'svhn': 'SVHN',
            'restricted_imagenet': 'Restricted ImageNet'}
ORDER = ['Natural', 'GR', 'LLR', 'AT', 'RST(0.5)', 'RST(1)', 'RST(2)', 'TRADES(1)', 'TRADES(3)', 'TRADES(6)']


def src(cell): return ''.join(cell['source'])


def md_cell(text, **meta):
    "A new markdown cell (with the id that nbformat 4.5 wants)."
    return {'cell_type': 'markdown', 'id': uuid.uuid4().hex[:8], 'metadata': meta, 'source': text}


def directives(cell):
    return [m.group(1) for l in src(cell).splitlines() if (m := DIRECTIVE.match(l))]


def separate_display_math(text):
    "Blank lines around `$$ ... $$` blocks, so that MyST reads a formula written inside a paragraph as display math."
    out, lines, i = [], text.split('\n'), 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith('$$'):
            j = i if line.strip().count('$$') >= 2 and len(line.strip()) > 2 else next(
                (k for k in range(i + 1, len(lines)) if '$$' in lines[k]), len(lines) - 1)
            if out and out[-1].strip(): out.append('')
            out.extend(lines[i:j + 1])
            if j + 1 < len(lines) and lines[j + 1].strip(): out.append('')
            i = j + 1
        else:
            out.append(line); i += 1
    return '\n'.join(out)


# ---------------------------------------------------------------- signatures and documentation of exported names
def _anno(a):
    if a is inspect.Parameter.empty: return ''
    return a if isinstance(a, str) else inspect.formatannotation(a)


def signature(obj, name):
    "`name(p: type = default, ...) -> type`, broken over lines when long."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return name
    parts = []
    for p in sig.parameters.values():
        s = {inspect.Parameter.VAR_POSITIONAL: '*', inspect.Parameter.VAR_KEYWORD: '**'}.get(p.kind, '') + p.name
        if (a := _anno(p.annotation)): s += f': {a}'
        if p.default is not inspect.Parameter.empty: s += (' = ' if a else '=') + repr(p.default)
        parts.append(s)
    ret = f' -> {_anno(sig.return_annotation)}' if sig.return_annotation is not inspect.Signature.empty else ''
    one = f"{name}({', '.join(parts)}){ret}"
    return one if len(one) <= 100 else f"{name}(\n" + ''.join(f'    {p},\n' for p in parts) + f"){ret}"


def api_doc(obj, name, module):
    "A MyST block with the signature, the docstring and, when documented, a table of the parameters."
    kind = 'class' if inspect.isclass(obj) else 'function'
    doc = inspect.getdoc(obj) or ''
    rows = []
    try:
        from fastcore.docments import docments
        for p, d in docments(obj, full=True).items():
            if d.get('docment'):
                default = d.get('default')
                rows.append((p, _anno(d.get('anno', inspect.Parameter.empty)) if d.get('anno') is not None else '',
                             '' if default is inspect.Parameter.empty or p == 'return' else repr(default), d['docment']))
    except Exception:  # docments cannot read every object (builtins, some classes): the docstring still shows
        rows = []
    esc = lambda s: str(s).replace('|', r'\|').replace('\n', ' ')
    table = ''
    if rows:
        table = '\n\n| parameter | type | default | meaning |\n|---|---|---|---|\n' + '\n'.join(
            f'| `{esc(p)}` | {f"`{esc(t)}`" if t else ""} | {f"`{esc(v)}`" if v else ""} | {esc(m)} |' for p, t, v, m in rows)
    return (f':::{{admonition}} {kind} `{module}.{name}`\n:class: api-doc\n\n```python\n{signature(obj, name)}\n```\n\n'
            f'{doc}{table}\n:::')


def defined_names(code):
    "Top-level functions and classes a code cell defines."
    try: tree = ast.parse(code)
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def library_notebook(path, out):
    "The book's copy of one library notebook: scaffolding left out, API documentation added. Returns (title, summary)."
    nb = json.loads(path.read_text())
    module_name = next((l.split()[-1] for c in nb['cells'] for l in src(c).splitlines()
                        if DIRECTIVE.match(l) and DIRECTIVE.match(l).group(1) == 'default_exp'), None)
    module = None
    if module_name:
        try: module = importlib.import_module(f'lolip_nb.{module_name}')
        except Exception as e: print(f'prepare: lolip_nb.{module_name} not importable ({e}); no API docs', file=sys.stderr)
    public = set(getattr(module, '__all__', []))
    cells, title, summary = [], path.stem, ''
    for c in nb['cells']:
        c = copy.deepcopy(c)
        if c['cell_type'] == 'markdown':
            text = separate_display_math(src(c))
            if not cells and text.lstrip().startswith('#'):  # the title cell: heading and '> summary'
                lines = text.splitlines()
                title = next(l.lstrip('# ').strip() for l in lines if l.startswith('#'))
                summary = next((l.lstrip('> ').strip() for l in lines if l.startswith('>')), '')
                where = (f"\n\nThis page is the notebook `nbs/{path.name}`, which `nbdev_export` turns into the module "
                         f"`lolip_nb.{module_name}`. Code marked *library* is the module's source; code marked *check* "
                         "is run by the test suite (`nbdev_test`, with `test_eq`, `test_close` and `test_fail` from "
                         "`fastcore.test`); outputs are not stored here. Boxes after a definition "
                         "give the signature and documentation of each public function.") if module_name else ''
                text = text + where
            c['source'] = text
            cells.append(c); continue
        if c['cell_type'] != 'code': cells.append(c); continue
        d = directives(c)
        code = src(c)
        body = '\n'.join(l for l in code.splitlines() if not DIRECTIVE.match(l)).strip('\n')
        # nbdev's set-up is left out; hidden cells that define a helper for the checks are kept
        if 'default_exp' in d or 'nbdev_export' in code or ('hide' in d and not defined_names(body)): continue
        if not body.strip(): continue
        c['source'], c['outputs'], c['execution_count'] = body, [], None
        exported = bool({'export', 'exports', 'exporti'} & set(d))
        tags = [t for t in c.get('metadata', {}).get('tags', []) if t not in ('parameters',)]
        tags.append('library' if exported else 'gpu-check' if 'gpu' in d else 'check')
        c['metadata'] = {'tags': tags}
        cells.append(c)
        if exported and module is not None:
            for name in defined_names(body):
                if name in public and hasattr(module, name):
                    cells.append(md_cell(api_doc(getattr(module, name), name, f'lolip_nb.{module_name}')))
    nb['cells'] = cells
    out.write_text(json.dumps(nb, indent=1))
    return title, summary, module_name


# ---------------------------------------------------------------- stored experiment runs
def slug(s): return re.sub(r'[^a-z0-9]+', '-', s.lower()).strip('-')


def scrub(text):
    "Text of an output without the build machine's folders."
    return MACHINE_PATH.sub('…', text)


def method_name(loss, form='original'):
    "The method's label in tables: the paper's name, marked when it is the paper form."
    try:
        from lolip_nb.tables import method_label
        return method_label(loss, form)
    except Exception:
        return loss


def pct(v): return '' if v is None else f'{100 * v:.1f}'


def num(v): return '' if v is None else f'{v:.2f}'


def runs():
    found = sorted(Path('results').glob('**/experiment.ipynb')) if Path('results').exists() else []
    entries = []
    for nb_path in found:
        rj = nb_path.parent / 'result.json'
        r = json.loads(rj.read_text()) if rj.exists() else {}
        cfg, m = r.get('config', {}), r.get('metrics', {})
        preset = nb_path.parent.relative_to('results').parts[0] if len(nb_path.parent.relative_to('results').parts) > 1 else ''
        entries.append(dict(nb=nb_path, result=r, cfg=cfg, metrics=m, preset=preset,
                            page='__'.join(nb_path.parent.relative_to('results').parts),
                            method=method_name(cfg.get('loss', ''), cfg.get('form', 'original')) if cfg else nb_path.parent.name,
                            dataset=DATASETS.get(cfg.get('dataset'), cfg.get('dataset', '')),
                            name=r.get('name', nb_path.parent.name)))
    # titles: method, dataset and preset; the model name, then the folder, only where needed to tell runs apart
    for e in entries:
        seed = e['cfg'].get('seed', 0)
        attack = {'multi_targeted': ', multi-targeted attack', 'autoattack': ', AutoAttack'}.get(e['cfg'].get('attack'), '')
        e['title'] = (f"{e['method']} on {e['dataset']}{attack}" + (f", {e['preset']} preset" if e['preset'] else '')
                      + (f", seed {seed}" if seed else ''))
    for key in ('name', 'page'):
        seen = {}
        for e in entries: seen.setdefault(e['title'], []).append(e)
        for same in seen.values():
            if len(same) > 1:
                for e in same: e['title'] += f" ({e[key]})" if key == 'name' else f" [{e['nb'].parent.name}]"
    return entries


def run_page(e):
    nb = json.loads(e['nb'].read_text())
    cfg, m, r = e['cfg'], e['metrics'], e['result']
    key = slug(e['page'])
    head = [f"# {e['title']}", '',
            f"The executed experiment notebook of the run `{e['name']}`, stored with its `result.json` in "
            f"`{e['nb'].parent.as_posix()}/` and shown as stored (not re-executed). The model name follows the naming of "
            "the authors' code {cite:p}`yang2020code`.", '']
    if m:
        rows = [('clean accuracy (%)', pct(m.get('train_acc')), pct(m.get('test_acc'))),
                ('PGD accuracy (%)', pct(m.get('adv_train_acc')), pct(m.get('adv_test_acc'))),
                ('local Lipschitz constant', num(m.get('train_lip')), num(m.get('test_lip')))]
        head += [f":::{{table}} Headline metrics of this run, read from its `result.json`: accuracies in %, "
                 r"on clean inputs and under PGD at $\epsilon$ = " + f"{cfg.get('eps', '')} ({cfg.get('norm', '')} norm); "
                 "the local Lipschitz constant of the logits (l1 change of the logits per unit of input distance).",
                 f':name: tbl-run-{key}', '', '| metric | train | test |', '|---|---|---|',
                 *[f'| {a} | {b} | {c} |' for a, b, c in rows], ':::', '',
                 "The notebook's own metrics table below prints the accuracies as fractions of 1, as `result.json` "
                 "stores them (0.84 is 84 %).", '']
    settings = [f"{k} {cfg[k]}" for k in ('arch', 'epochs', 'n_train', 'n_test', 'optimizer', 'lr', 'batch_size', 'seed')
                if cfg.get(k) is not None]
    if settings: head += ['**Configuration:** ' + ', '.join(settings) + '.', '']
    p = r.get('provenance', {})
    if p: head += [f"**Provenance:** `{p.get('command', '')}`, commit `{str(p.get('commit', ''))[:10]}`, "
                   f"{p.get('device', '')}, {str(p.get('date', ''))[:10]}.", '']
    cells = [md_cell('\n'.join(head))]
    for c in nb['cells'][1:] if nb['cells'] and nb['cells'][0]['cell_type'] == 'markdown' else nb['cells']:
        c = copy.deepcopy(c)
        if c['cell_type'] == 'markdown': c['source'] = separate_display_math(src(c))
        if c['cell_type'] == 'code':
            outs = []
            for o in c.get('outputs', []):
                if o.get('output_type') == 'stream':
                    text = ''.join(o.get('text', ''))
                    if 'Warning' in text and MACHINE_PATH.search(text): continue   # e.g. tqdm's IProgress warning
                    o['text'] = scrub(text)
                elif 'data' in o and 'text/plain' in o['data']:
                    o['data']['text/plain'] = scrub(''.join(o['data']['text/plain']))
                outs.append(o)
            c['outputs'] = outs
            if any('image/png' in o.get('data', {}) for o in outs):
                c.setdefault('metadata', {})['mystnb'] = {'figure': {
                    'caption': f"Training history of the run: loss, training accuracy and learning rate per epoch "
                               f"({e['method']}, {e['dataset']}).", 'name': f'fig-run-{key}'}}
        cells.append(c)
    nb['cells'] = cells
    (API / 'runs' / f"{e['page']}.ipynb").write_text(json.dumps(nb, indent=1))


def main():
    shutil.rmtree(API, ignore_errors=True)
    (API / 'nbs').mkdir(parents=True); (API / 'runs').mkdir(parents=True)
    rows = []
    nbs = sorted(Path('nbs').glob('[0-9]*.ipynb'))
    for nb in nbs:
        title, summary, module = library_notebook(nb, API / 'nbs' / nb.name)
        rows.append(f"| [{title}](nbs/{nb.stem}) | `lolip_nb.{module or nb.stem.split('_', 1)[1]}` | {summary} |")
    (API / 'index.md').write_text(
        "# The library, as literate notebooks\n\n"
        "Each module of `lolip_nb` is generated by `nbdev_export` from one notebook in `nbs/`: the idea, the formula, a "
        "small function, then the check that uses it. The pages below are those notebooks without nbdev's scaffolding, "
        "with the signature and documentation of every public function after its definition. They are not executed "
        "here; `make test` runs them.\n\n"
        ":::{table} The library's notebooks, in reading order, and the module each one generates.\n:name: tbl-api-notebooks\n\n"
        "| notebook | module | what it holds |\n|---|---|---|\n" + '\n'.join(rows) + '\n:::\n')

    entries = runs()
    for e in entries: run_page(e)
    order = lambda e: (e['preset'], e['dataset'], e['cfg'].get('arch', ''),
                       ORDER.index(e['method']) if e['method'] in ORDER else len(ORDER), e['title'])
    lines = []
    for e in sorted(entries, key=order):
        m, c = e['metrics'], e['cfg']
        lines.append(f"| [{e['method']}]({e['page']}) | {e['preset']} | {e['dataset']} | {c.get('arch', '')} | "
                     f"{c.get('epochs', '')} | {c.get('n_train') or 'all'} | {pct(m.get('test_acc'))} | "
                     f"{pct(m.get('adv_test_acc'))} | {num(m.get('test_lip'))} | `{e['name']}` |")
    body = (":::{table} The stored runs, by preset and method: test accuracy and PGD test accuracy in %, the test "
            "set's local Lipschitz constant of the logits, and the model name in the authors' naming.\n"
            ":name: tbl-runs\n\n| run | preset | dataset | arch | epochs | training images | test acc (%) | "
            "PGD test acc (%) | test Lipschitz | model |\n|---|---|---|---|---|---|---|---|---|---|\n"
            + '\n'.join(lines) + '\n:::\n') if lines else \
        "*No experiment runs are stored in `results/` yet: `make reproduce` or `lolip grid quick` writes them.*\n"
    (API / 'runs' / 'index.md').write_text(
        "# Stored experiment runs\n\nEvery finished run keeps the executed experiment notebook next to its "
        "`result.json`; they are shown here with their stored outputs, not re-executed. Each page opens with the run's "
        "headline metrics and configuration.\n\n" + body)
    print(f"book/api: {len(nbs)} library notebooks, {len(entries)} experiment runs")


if __name__ == '__main__':
    main()
