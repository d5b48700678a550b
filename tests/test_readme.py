"The README's library examples run as written: bring your own model, a loss in one's own loop, one run, load_run."
import re
from pathlib import Path

import torch

import lolip_nb

README = Path(__file__).resolve().parent.parent / 'README.md'


def _blocks(section: str) -> list[str]:
    "The ```python blocks of the README's `## section`, in order."
    text = README.read_text()
    body = text.split(f'## {section}', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', body, flags=re.S)


def test_the_readme_library_examples_run(tmp_path, monkeypatch):
    blocks = _blocks('Using the library')
    assert len(blocks) == 4 and len(blocks[0].strip().splitlines()) == 5   # five lines bring one's own model
    assert [b for b in blocks[3].strip().splitlines() if not b.startswith('import')] == \
        ["model, cfg, result = lolip_nb.load_run('runs/trades6')          # eval mode, on the CPU unless device= says otherwise"]
    monkeypatch.chdir(tmp_path)
    ns = {}
    for code in blocks: exec(compile(code, 'README.md', 'exec'), ns)
    assert (ns['x_adv'] - ns['x']).abs().max() <= 0.1 + 1e-6 and ns['lip'] > 0
    assert {'adv_test_acc', 'adv_test_acc_original', 'adv_test_acc_aa', 'test_lip_original', 'test_lip_strong'} <= set(ns['metrics'])
    assert ns['loss'].dim() == 0 and torch.isfinite(ns['loss'])
    model, cfg, result = ns['model'], ns['cfg'], ns['result']
    assert not model.training and (tmp_path / 'runs' / 'trades6' / 'model.safetensors').is_file()
    from lolip_nb.train import load_data
    _, (x_test, y_test) = load_data(cfg)
    assert lolip_nb.accuracy(model, x_test, y_test) == result['metrics']['test_acc']
