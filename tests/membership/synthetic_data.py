"""A data folder the membership tests make when no real one is at hand.

The files are in CIFAR-10's official format (pickled batches), read by fedleak's own loader.
Each image is its class's fixed random template at low contrast plus its own uniform noise, and a
share of the labels is drawn at random: a small model learns the classes only partly from the
templates and memorises the rest, which is what the membership attacks exploit (the real
dataset's overfitting, in miniature). The sizes are those of the partial CIFAR-10 copy the tests
were calibrated on (5170 train, 1017 test). The server-side tests make their own MNIST-format
data (``test_mia_federated.made_mnist``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CIFAR_SIZES = {"train": 5170, "test": 1017}
# template contrast divisor and share of random labels: hard and overfitted, as the tiny MLP is
# on the real CIFAR-10
CIFAR_STYLE = {"contrast": 6, "label_noise": 0.4}


def _images(
    n: int, shape: tuple[int, ...], rng: np.random.Generator, *, contrast: int, label_noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: template // ``contrast`` + uniform noise; a ``label_noise`` share of random labels."""
    templates = rng.integers(0, 256, size=(10, *shape))
    classes = rng.integers(0, 10, size=n)
    noise = rng.integers(0, 256 - 256 // contrast, size=(n, *shape))
    labels = np.where(rng.random(n) < label_noise, rng.integers(0, 10, size=n), classes)
    return (templates[classes] // contrast + noise).astype(np.uint8), labels


def make_data_root(root: Path, seed: int = 0) -> Path:
    """Write a synthetic CIFAR-10 folder under ``root`` and return it."""
    rng = np.random.default_rng(seed)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    x, y = _images(CIFAR_SIZES["train"], (3072,), rng, **CIFAR_STYLE)
    for k, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        batch = {b"data": x[part], b"labels": y[part].tolist()}
        (cifar / f"data_batch_{k}").write_bytes(pickle.dumps(batch, protocol=2))
    x, y = _images(CIFAR_SIZES["test"], (3072,), rng, **CIFAR_STYLE)
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (cifar / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return root
