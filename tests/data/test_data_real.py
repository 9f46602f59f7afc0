"""Real dataset files where a data folder holds them: MNIST, partial CIFAR-10, Fashion-MNIST (Debian package)."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fl.data import ImageDataset, load_dataset

FMNIST_DEB = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def mnist_test(data_root: Path) -> ImageDataset:
    return load_dataset("mnist", split="test", root=data_root, download=False)


def test_data_mnist_train_counts_and_first_labels(data_root: Path) -> None:
    train = load_dataset("mnist", split="train", root=data_root, download=False)
    assert len(train) == 60000 and train.shape == (1, 28, 28) and train.num_classes == 10
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert train.class_counts()[:2].tolist() == [5923, 6742]


def test_data_mnist_test_is_float_in_unit_range(mnist_test: ImageDataset) -> None:
    assert len(mnist_test) == 10000
    assert mnist_test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist_test.images.dtype == torch.float32 and mnist_test.labels.dtype == torch.int64
    assert mnist_test.images.min() == 0.0 and mnist_test.images.max() == 1.0
    assert mnist_test.class_counts().tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_data_plain_idx_reads_like_gzip(data_root: Path, tmp_path: Path, mnist_test: ImageDataset) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(data_root / "MNIST" / "raw" / f"{name}.gz", "rb") as src:
            (raw / name).write_bytes(src.read())
    plain = load_dataset("mnist", split="test", root=tmp_path, download=False)
    assert torch.equal(plain.images, mnist_test.images)
    assert torch.equal(plain.labels, mnist_test.labels)


def test_data_cifar10_partial_counts_and_labels(
    data_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fl.data import load

    monkeypatch.setattr(load, "_ANNOUNCED", set())  # announced once per process: maybe by an earlier test
    with caplog.at_level(logging.INFO, logger="fedleak"):
        train = load_dataset("cifar10", split="train", root=data_root, download=False)
    test = load_dataset("cifar10", split="test", root=data_root, download=False)
    assert (len(train), len(test)) == (5170, 1017)
    assert train.shape == (3, 32, 32) and train.classes[0] == "airplane" and train.classes[9] == "truck"
    assert train.labels[:5].tolist() == [
        6,
        9,
        9,
        4,
        1,
    ]  # data_batch_1 starts frog, truck, truck, deer, car
    assert test.labels[:5].tolist() == [3, 8, 8, 0, 6]
    assert train.class_counts().tolist() == [521, 534, 497, 505, 540, 484, 515, 524, 537, 513]
    assert "5170 images found" in caplog.text and "partial" in caplog.text
    # channel-planar layout: the first test image (a cat) is not a grey image repeated thrice
    assert not torch.equal(test.images[0, 0], test.images[0, 2])


def test_data_environment_variable_selects_the_root(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, mnist_test: ImageDataset
) -> None:
    monkeypatch.setenv("FEDLEAK_DATA", str(data_root))
    again = load_dataset("mnist", split="test", download=False)
    assert torch.equal(again.labels, mnist_test.labels)


@pytest.mark.skipif(not FMNIST_DEB.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_data_fmnist_from_debian_package(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in FMNIST_DEB.glob("t10k-*-ubyte.gz"):
        (raw / path.name).symlink_to(path)
    test = load_dataset("fmnist", split="test", root=tmp_path, download=False)
    assert len(test) == 10000 and test.shape == (1, 28, 28)
    assert test.classes[0] == "T-shirt/top" and test.classes[9] == "Ankle boot"
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert np.all(test.class_counts() == 1000)
