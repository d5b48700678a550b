"A library researchers can pick up (issue 16): stored models back, evaluated again, the original's commands, following a grid."
import csv, io, json, re, socket, subprocess
from pathlib import Path

import pytest

from conftest import lolip, REPO, TINY

FAST = ['--autoattack', 'fast', '--n-strong', '16']
RUN = ['run', '--dataset', 'fashion_mnist', '--model', 'ce-tor-CNN001', '--epochs', '1', '--n-train', '64', '--n-test', '32',
       '--device', 'cpu', '--quiet', *FAST]
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # the run and its evaluation again with the same float rounding


def _one_line_error(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith('lolip: error: '), r.stderr
    assert 'Traceback' not in r.stderr and r.stdout == '', r.stdout + r.stderr
    return lines[0]


def test_load_run_gives_back_the_model_with_its_stored_test_accuracy(tmp_path):
    import torch
    import lolip_nb
    from lolip_nb.evaluate import accuracy
    from lolip_nb.experiment import experiment_config, run_experiment, save_weights
    from lolip_nb.train import load_data
    cfg = experiment_config('ce-tor-CNN001', 'fashion_mnist', eps=0.1, epochs=1, n_train=64, n_test=32, autoattack='fast',
                            n_strong=16)
    out = tmp_path / 'run'
    res = run_experiment(cfg, out, device='cpu', progress=False)
    assert sorted(p.name for p in out.iterdir()) == ['model.safetensors', 'result.json', 'run.log']  # the checkpoint is gone

    model, loaded, stored = lolip_nb.load_run(out)
    assert loaded == cfg and stored == res and not model.training and next(model.parameters()).device.type == 'cpu'
    (x_train, y_train), (x_test, y_test) = load_data(loaded)
    assert accuracy(model, x_test, y_test) == res['metrics']['test_acc']       # exactly
    assert accuracy(model, x_train, y_train) == res['metrics']['train_acc']

    other = tmp_path / 'other'; other.mkdir()                                   # weights of another configuration
    (other / 'result.json').write_bytes((out / 'result.json').read_bytes())
    with pytest.raises(lolip_nb.LolipError, match='has no trained weights'): lolip_nb.load_run(other)
    save_weights(model, experiment_config('ce-tor-CNN001', 'fashion_mnist', eps=0.2), other / 'model.safetensors')
    with pytest.raises(lolip_nb.LolipError, match='they come from different runs'): lolip_nb.load_run(other)
    # the weights stay out of git
    ignored = subprocess.run(['git', 'check-ignore', '-q', 'results/quick/some-run/model.safetensors'], cwd=REPO)
    assert ignored.returncode == 0


def test_lolip_evaluate_reevaluates_a_stored_model_without_touching_its_result(tmp_path):
    out = tmp_path / 'run'
    r = lolip(*RUN, '--out', out, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert f"model: {out / 'model.safetensors'}" in r.stdout
    result = (out / 'result.json').read_bytes()
    stored = json.loads(result)

    same = lolip('evaluate', out, '--device', 'cpu', '--quiet', env=ONE_THREAD)
    assert same.returncode == 0, same.stderr
    path = Path(same.stdout.strip().splitlines()[-1].removeprefix('evaluation: '))
    assert path.parent == out / 'evaluations' and re.fullmatch(r'pgd-eps0\.1-[0-9a-f]{8}\.json', path.name), path
    ev = json.loads(path.read_text())
    assert ev['metrics'] == stored['metrics']                                   # the run's settings: its metrics, exactly
    assert ev['settings'] == dict(attack='pgd', eps=0.1, norm='inf', autoattack='fast', n_strong=16, n_test=32, eval_precision='fp32')
    assert ev['model'] == str(out) and ev['config_hash'] == stored['config_hash']
    assert ev['provenance']['command'].startswith('lolip evaluate ')
    assert f"test_acc {stored['metrics']['test_acc']:.4g}" in same.stdout

    mine = tmp_path / 'mt.json'
    other = lolip('evaluate', out, '--attack', 'multitarget', '--eps', '0.2', '--autoattack', 'none', '--n-test', '16',
                  '--device', 'cpu', '--quiet', '--out', mine)
    assert other.returncode == 0, other.stderr
    ev2 = json.loads(mine.read_text())
    assert ev2['settings'] == dict(attack='multi_targeted', eps=0.2, norm='inf', autoattack=None, n_strong=16, n_test=16, eval_precision='fp32')
    assert 'adv_test_acc_aa' not in ev2['metrics'] and ev2['n_test'] == 16 and ev2['evaluation']['attack']['name'] == 'multi_targeted'
    assert len(list((out / 'evaluations').iterdir())) == 1                      # --out went elsewhere
    assert (out / 'result.json').read_bytes() == result                         # never modified

    assert 'eps must be in (0, 1]' in _one_line_error(lolip('evaluate', out, '--eps', '3', '--device', 'cpu'))
    assert 'holds no finished run' in _one_line_error(lolip('evaluate', tmp_path, '--device', 'cpu'))
    (out / 'model.safetensors').unlink()
    assert 'has no trained weights (model.safetensors' in _one_line_error(lolip('evaluate', out, '--device', 'cpu'))


# the original README's three commands, `python ./main.py` replaced by `lolip run`, flags as written there
ORIGINAL_README = [
    ('mnist', '--experiment experiment01 --no-hooks --norm inf --eps 0.1 --dataset mnist --model ce-tor-CNN001 '
              '--attack pgd --random_seed 0'),
    ('cifar10', '--experiment experiment01 --no-hooks --norm inf --eps 0.031 --dataset cifar10 '
                '--model strades6ce-tor-WRN_40_10 --attack pgd --random_seed 0'),
    ('restricted_imagenet', '--experiment restrictedImgnet --no-hooks --norm inf --eps 0.005 --dataset resImgnet112v3 '
                            '--model advce-tor-ResNet50-adambs128 --attack pgd --random_seed 0'),
]


@pytest.mark.parametrize('dataset, flags', ORIGINAL_README, ids=[d for d, _ in ORIGINAL_README])
def test_the_original_readme_commands_fail_only_for_missing_data(tmp_path, dataset, flags):
    "Accepted as written; on a machine without the data they stop in one line naming the dataset, before any training."
    if dataset == 'mnist' and Path('/usr/share/datasets/mnist').exists():
        pytest.skip('MNIST is installed system-wide here: the command would train for hours')
    work, data = tmp_path / 'work', tmp_path / 'data'
    work.mkdir(); data.mkdir()
    line = _one_line_error(lolip('run', *flags.split(), cwd=work, env={'LOLIP_DATA': str(data)}, timeout=300))
    assert f"dataset '{dataset}' not found" in line, line
    assert list(work.iterdir()) == [] and list(data.iterdir()) == []              # no result folder, nothing trained


def test_the_original_experiment_names_keep_their_meaning(tmp_path):
    base = ['run', '--no-hooks', '--model', 'ce-tor-CNN001', '--device', 'cpu']
    line = _one_line_error(lolip(*base, '--experiment', 'restrictedImgnet', '--dataset', 'mnist', cwd=tmp_path))
    assert 'trains on Restricted ImageNet, not mnist: use --dataset resImgnet112v3' in line
    assert 'use --experiment experiment01' in _one_line_error(lolip(*base, '--experiment', 'hypo', '--dataset', 'mnist', cwd=tmp_path))
    line = _one_line_error(lolip(*base, '--experiment', 'restrictedImgnetHypo', '--dataset', 'resImgnet112v3', cwd=tmp_path))
    assert 'NameError' in line
    help_text = lolip('run', '--help').stdout
    assert 'restrictedImgnet' in help_text and 'NameError' in help_text
    assert list(tmp_path.iterdir()) == []


def _online() -> bool:
    try: socket.getaddrinfo('ossci-datasets.s3.amazonaws.com', 443); return True
    except OSError: return False


def test_download_offline_is_one_line_naming_the_network_problem(tmp_path, tiny_grid):
    if _online(): pytest.skip('this machine is online: the datasets would really be downloaded')
    data, work = tmp_path / 'data', tmp_path / 'work'
    data.mkdir(); work.mkdir()
    env = {'LOLIP_DATA': str(data)}
    line = _one_line_error(lolip(*RUN, '--dataset', 'mnist', '--download', cwd=work, env=env))
    assert "dataset 'mnist' not found and its download into" in line and 'failed (network error: ' in line, line
    assert list(work.iterdir()) == []                                           # before any folder is made
    grid = tiny_grid(['ce-tor-CNN001'], extra=[{'kind': 'experiment01', 'params': dict(TINY, model='ce-tor-CNN001',
                                                                                          dataset='cifar10', eps=0.031)}])
    line = _one_line_error(lolip('grid', grid, '--root', work / 'results', '--download', '--device', 'cpu', env=env))
    assert "dataset 'cifar10' not found and its download into" in line and 'failed (network error: ' in line, line
    assert not list((work / 'results').glob('*/*'))                             # no job started


def test_version():
    r = lolip('--version')
    assert r.returncode == 0 and re.match(r'lolip_nb \d+\.\d+\.\d+ \(torch ', r.stdout), r.stdout + r.stderr


def _fake_result(folder: Path, loss: str, test_acc: float):
    folder.mkdir(parents=True)
    (folder / 'result.json').write_text(json.dumps({
        'name': f'{loss}-tor-CNN001', 'config': {'dataset': 'fashion_mnist', 'arch': 'CNN001', 'loss': loss, 'eps': 0.1, 'epochs': 2},
        'metrics': {'train_acc': 0.9, 'test_acc': test_acc, 'adv_test_acc': 0.25, 'test_lip': 12.5},
        'provenance': {'device': 'cpu'}, 'timings': {'train_s': 1.0}}))


def test_table_stdout_holds_only_the_table_in_every_format(tmp_path):
    _fake_result(tmp_path / 'g' / 'a', 'ce', 0.8)
    _fake_result(tmp_path / 'g' / 'b', 'strades6ce', 0.70125)
    parse = {'markdown': lambda s: s.splitlines()[0].startswith('| method') and s.splitlines()[-1].startswith('| TRADES(6)'),
             'html': lambda s: s.startswith('<table') and s.endswith('</table>'),
             'latex': lambda s: s.startswith('\\begin{tabular}') and s.endswith('\\end{tabular}'),
             'csv': lambda s: [row['test acc'] for row in csv.DictReader(io.StringIO(s))] == ['80.0', '70.125'],
             'json': lambda s: [row['test acc'] for row in json.loads(s)] == [80.0, 70.125]}
    for fmt, ok in parse.items():
        r = lolip('table', 'g', '--root', tmp_path, '--format', fmt)
        assert r.returncode == 0, r.stderr
        assert ok(r.stdout.strip()), (fmt, r.stdout)
        assert 'runs, epochs' not in r.stdout and r.stderr.strip() == '2 runs, epochs 2, device cpu', (fmt, r.stderr)
    (tmp_path / 'g' / 'b' / 'result.json').write_text(json.dumps({'config': {'dataset': 'mnist'}, 'metrics': {}}))
    line = _one_line_error(lolip('table', 'g', '--root', tmp_path, '--format', 'csv'))
    assert str(tmp_path / 'g' / 'b' / 'result.json') in line and "its 'config' is not one" in line


def test_papermill_without_the_notebooks_is_one_line(tmp_path, tiny_grid):
    empty = tmp_path / 'nowhere'; empty.mkdir()
    line = _one_line_error(lolip('grid', tiny_grid(['ce-tor-CNN001']), '--root', tmp_path / 'results', '--execute', 'papermill',
                                 '--device', 'cpu', env={'LOLIP_NOTEBOOKS': str(empty)}))
    assert f'are not found (searched {empty})' in line and '--execute process' in line
    assert not list((tmp_path / 'results').glob('*/*'))


EPOCH_LINE = re.compile(r'^epoch 1/1: loss \d+\.\d{4}, train acc \d\.\d{4}, lr 0\.0001, \d+\.\d s$', re.M)


@pytest.mark.parametrize('execute, every', [('process', '0.5'), ('papermill', '0.5'), ('streams', '0.000001')])
def test_every_execution_logs_epochs_and_the_grid_reports_its_status(tmp_path, tiny_grid, execute, every):
    grid = tiny_grid(['ce-tor-CNN001'])
    r = lolip('grid', grid, '--root', tmp_path, '--execute', execute, '--device', 'cpu', '--status-every', every)
    assert r.returncode == 0 and 'summary: 1 ran' in r.stdout, r.stdout + r.stderr
    folder = next(tmp_path.glob('tiny/*/'))
    log = (folder / 'run.log').read_text()
    assert len(EPOCH_LINE.findall(log)) == 1 and '\nevaluating on 96 training and 48 test images' in log, log
    assert (folder / 'model.safetensors').is_file() and not (folder / 'checkpoint.pt').exists()
    status = [l for l in r.stdout.splitlines() if l.startswith('[status] 0/1 done, 1 running, 0 left; ce-tor-CNN001')]
    assert status and all(l.endswith('time left unknown until a job finishes') for l in status), r.stdout
    if execute != 'streams':  # streams evaluates within one step, when no status line is printed
        assert any(f'{folder.name}: epoch 1/1, evaluating;' in l for l in status), status
    if execute == 'papermill':
        cells = json.loads((folder / 'experiment.ipynb').read_text())['cells']
        outputs = json.dumps([c.get('outputs', []) for c in cells])
        assert 'execute_result' in outputs and 'TqdmWarning' not in outputs and 'IProgress not found' not in outputs


def test_grid_status_estimates_the_time_left_from_finished_jobs(tmp_path, tiny_grid):
    grid = tiny_grid(['ce-tor-CNN001', 'advce-tor-CNN001'])
    r = lolip('grid', grid, '--root', tmp_path, '--execute', 'process', '--device', 'cpu', '--status-every', '0.5')
    assert r.returncode == 0 and 'summary: 2 ran' in r.stdout, r.stdout + r.stderr
    after_first = [l for l in r.stdout.splitlines() if l.startswith('[status] 1/2 done, 1 running, 0 left; ')]
    assert after_first and all(re.search(r'; about \d+ (s|min) left \(from 1 finished job\)$', l) for l in after_first), r.stdout
