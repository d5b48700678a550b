"Integration tests of lolip_nb.data: real Fashion-MNIST offline, IDX validation, errors, Restricted ImageNet builder."
import gzip, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lolip_nb.core import LolipError
from lolip_nb.data import (DATASETS, DatasetUnavailable, build_restricted_imagenet, data_root, dataset_source,
                           load_dataset)

HAVE_FASHION = Path('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz').exists()


def _write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    data = bytes([0, 0, 8, arr.ndim]) + b''.join(d.to_bytes(4, 'big') for d in arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, 'wb').write(data)


@pytest.mark.skipif(not HAVE_FASHION, reason='Debian dataset-fashion-mnist not installed')
def test_fashion_mnist_real():
    x, y = load_dataset('fashion_mnist', 'test')
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert y.bincount().tolist() == [1000] * 10
    assert torch.equal((x * 255).round() / 255, x)          # bytes / 255
    a, b = load_dataset('fashion_mnist', 'train', subset=123, seed=7)
    c, d = load_dataset('fashion_mnist', 'train', subset=123, seed=7)
    assert torch.equal(a, c) and torch.equal(b, d) and a.shape == (123, 1, 28, 28)
    assert dataset_source('fashion_mnist').endswith('fashion-mnist') or 'fashion' in dataset_source('fashion_mnist').lower()


def test_datasets_table():
    assert set(DATASETS) == {'mnist', 'fashion_mnist', 'cifar10', 'svhn', 'restricted_imagenet'}
    assert DATASETS['cifar10'].eps == 0.031 and DATASETS['restricted_imagenet'].eps == 0.005


def test_missing_and_unknown(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"dataset 'svhn' not found.*searched"):
        load_dataset('svhn', root=tmp_path)
    with pytest.raises(DatasetUnavailable, match='mnist'):
        load_dataset('mnist', root=tmp_path)
    with pytest.raises(LolipError, match='unknown dataset'):
        load_dataset('cifar100', root=tmp_path)


def test_download_offline_is_one_line(tmp_path):
    # this machine has no internet: the download must fail as a DatasetUnavailable, not a traceback
    with pytest.raises(DatasetUnavailable, match=r"its download into .* failed \(network error: .*\): check this machine's network"):
        load_dataset('cifar10', root=tmp_path, download=True)


def test_torchvision_layout_and_corrupt(tmp_path):
    raw = tmp_path / 'MNIST' / 'raw'
    raw.mkdir(parents=True)
    _write_idx(raw / 't10k-images-idx3-ubyte.gz', np.full((4, 28, 28), 255), gz=True)
    _write_idx(raw / 't10k-labels-idx1-ubyte', [0, 1, 2, 9])
    x, y = load_dataset('mnist', 'test', root=tmp_path)
    assert x.shape == (4, 1, 28, 28) and float(x.min()) == 1.0 and y.tolist() == [0, 1, 2, 9]
    _write_idx(raw / 'train-images-idx3-ubyte', np.zeros((4, 28, 28)))
    full = (raw / 'train-images-idx3-ubyte').read_bytes()
    (raw / 'train-images-idx3-ubyte').write_bytes(full[:-100])
    _write_idx(raw / 'train-labels-idx1-ubyte', [0, 1, 2, 3])
    with pytest.raises(LolipError, match='train-images-idx3-ubyte is truncated'):
        load_dataset('mnist', 'train', root=tmp_path)


def test_lolip_data_env(tmp_path):
    code = "from lolip_nb.data import data_root; print(data_root())"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env={'LOLIP_DATA': str(tmp_path), 'PATH': '/usr/bin:/bin'}).stdout.strip()
    assert out == str(tmp_path)


def test_build_restricted_imagenet(tmp_path):
    from PIL import Image
    src = tmp_path / 'imagenet'
    for i in range(1000): (src / 'train' / f'n{i:08d}').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (30, 33, 397, 151, 268, 269):   # frog, turtle, fish, dog, dog, none (269 is outside dog's range)
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(src / 'train' / f'n{i:08d}' / 'a.JPEG')
    counts = build_restricted_imagenet(src, tmp_path / 'restricted_imagenet')
    assert counts == {'train': 5}
    x, y = load_dataset('restricted_imagenet', 'train', root=tmp_path)
    assert x.shape == (5, 3, 64, 64)
    assert y.tolist() == [0, 0, 2, 3, 6]   # dog, dog, frog, turtle, fish
    assert build_restricted_imagenet(src, tmp_path / 'restricted_imagenet') == {'train': 5}  # rerun skips done files
