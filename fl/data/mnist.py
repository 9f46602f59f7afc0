"""MNIST (LeCun et al. 1998) and Fashion-MNIST (Xiao et al. 2017), read from their IDX files.

Folders as torchvision lays them out: ``MNIST/raw/`` and ``FashionMNIST/raw/``, each file
either gzip-compressed (``*-ubyte.gz``, as distributed) or decompressed (``*-ubyte``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fl.core.errors import DataError
from fl.data.idx import read_idx
from fl.data.source import DatasetSource, Resource, register

PREFIX = {"train": "train", "test": "t10k"}

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FMNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FMNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FMNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def idx_files(split: str) -> tuple[str, str]:
    """The (images, labels) file names of ``split``, without ``.gz``."""
    return (f"{PREFIX[split]}-images-idx3-ubyte", f"{PREFIX[split]}-labels-idx1-ubyte")


def read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, None]:
    """Read one split of an MNIST-format folder (plain files preferred over ``.gz``)."""
    paths = []
    for name in idx_files(split):
        found = [folder / n for n in (name, f"{name}.gz") if (folder / n).is_file()]
        if not found:
            raise DataError(f"missing {folder / name}[.gz]")
        paths.append(found[0])
    images = read_idx(paths[0], ndim=3)
    labels = read_idx(paths[1], ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels")
    return images[:, None], labels.astype(np.int64), None


def _source(
    name: str, folder: str, classes: tuple[str, ...], mirrors: tuple[str, ...], md5s: dict[str, str]
) -> DatasetSource:
    files = {split: tuple(f"{n}.gz" for n in idx_files(split)) for split in PREFIX}
    return DatasetSource(
        name=name,
        shape=(1, 28, 28),
        classes=classes,
        sizes={"train": 60000, "test": 10000},
        folder=folder,
        files=files,
        reader=read_idx_split,
        resources=tuple(Resource(f, tuple(m + f for m in mirrors), md5) for f, md5 in md5s.items()),
        alternatives={f: (f.removesuffix(".gz"),) for fs in files.values() for f in fs},
    )


MNIST = register(_source("mnist", "MNIST/raw", tuple(str(d) for d in range(10)), MNIST_MIRRORS, MNIST_MD5))
FMNIST = register(_source("fmnist", "FashionMNIST/raw", FMNIST_CLASSES, FMNIST_MIRRORS, FMNIST_MD5))
