#!/usr/bin/env python3
"""Rebuild fedleak's bundled sample sets in ``fl/data/sample/`` from the real datasets.

``cifar10.npz``: the first 10 images of each class of the CIFAR-10 ``test_batch``;
``fmnist.npz``: the first 10 images of each class of the Fashion-MNIST ``t10k`` files.
In each class the first 8 (in file order) go to ``train``, the last 2 to ``test``. Arrays are
uint8 images (N, C, H, W), uint8 labels and the class names as a unicode array (no pickle).

Usage:
    .venv/bin/python scripts/make_sample.py [--cifar DIR] [--fmnist DIR]
Defaults: ``$FEDLEAK_DATA/cifar-10-batches-py`` (``data/`` when unset) and
/usr/share/datasets/fashion-mnist (Debian package ``dataset-fashion-mnist``). Prints the SHA-256 of each written file for the README.
"""  # noqa: E501

from __future__ import annotations

import argparse
import hashlib
import io
import os
from pathlib import Path

import numpy as np

from fl.core.runs import atomic_write_bytes
from fl.data.bundled import PER_CLASS, SAMPLE_DIR
from fl.data.cifar import CIFAR10_CLASSES, read_batch
from fl.data.idx import read_idx
from fl.data.mnist import FMNIST_CLASSES

REPO = Path(__file__).resolve().parents[1]


def pick(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The first ``sum(PER_CLASS)`` images of every class, split per class into train and test."""
    n_train, n_test = PER_CLASS["train"], PER_CLASS["test"]
    train, test = [], []
    for c in range(len(classes)):
        idx = np.flatnonzero(labels == c)[: n_train + n_test]
        if len(idx) < n_train + n_test:
            raise SystemExit(f"class {classes[c]!r} has only {len(idx)} images")
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    out = {"classes": np.array(classes, dtype=np.str_)}
    for split, parts in (("train", train), ("test", test)):
        idx = np.concatenate(parts)
        out[f"{split}_images"] = np.ascontiguousarray(images[idx], dtype=np.uint8)
        out[f"{split}_labels"] = labels[idx].astype(np.uint8)
        out[f"{split}_source_index"] = idx.astype(np.int32)  # position in the source file
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("FEDLEAK_DATA", "data"))
    parser.add_argument("--cifar", type=Path, default=data / "cifar-10-batches-py")
    parser.add_argument("--fmnist", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()

    images, labels = read_batch(args.cifar / "test_batch", "labels")
    cifar = pick(images, labels, CIFAR10_CLASSES)
    fm_images = read_idx(args.fmnist / "t10k-images-idx3-ubyte.gz", ndim=3)[:, None]
    fm_labels = read_idx(args.fmnist / "t10k-labels-idx1-ubyte.gz", ndim=1)
    fmnist = pick(fm_images, fm_labels, FMNIST_CLASSES)
    for name, arrays in (("cifar10.npz", cifar), ("fmnist.npz", fmnist)):
        path = SAMPLE_DIR / name
        digest = write_npz(path, arrays)
        print(f"{path.relative_to(REPO)}  {path.stat().st_size} bytes  sha256 {digest}")


if __name__ == "__main__":
    main()
