"""The sample sets bundled inside the package, so demos and examples run with no data directory.

Two names, because the two sub-sets differ in shape:
- ``sample``: 100 CIFAR-10 test images (3x32x32), 10 per class;
- ``sample-fmnist``: 100 Fashion-MNIST test images (1x28x28), 10 per class.
In each, the first 8 images of every class form ``train`` (80) and the last 2 ``test`` (20).
Provenance, licences and checksums: ``fl/data/sample/README.md``; rebuilt by
``scripts/make_sample.py``. Stored as ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fl.core.errors import DataError
from fl.data.cifar import CIFAR10_CLASSES
from fl.data.mnist import FMNIST_CLASSES
from fl.data.source import DatasetSource, register

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
PER_CLASS = {"train": 8, "test": 2}


def read_npz(folder: Path, filename: str, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """One split of a bundled ``.npz`` (keys ``{split}_images``, ``{split}_labels``, ``classes``)."""
    path = folder / filename
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            classes = tuple(str(c) for c in npz["classes"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read bundled sample {path}: {exc}") from None
    return images, labels.astype(np.int64), classes


def _sample(name: str, filename: str, shape: tuple[int, int, int], classes: tuple[str, ...]) -> DatasetSource:
    return DatasetSource(
        name=name,
        shape=shape,
        classes=classes,
        sizes={s: n * len(classes) for s, n in PER_CLASS.items()},
        folder=str(SAMPLE_DIR),
        files={"train": (filename,), "test": (filename,)},
        reader=lambda folder, split: read_npz(folder, filename, split),
        bundled=True,
    )


SAMPLE = register(_sample("sample", "cifar10.npz", (3, 32, 32), CIFAR10_CLASSES))
SAMPLE_FMNIST = register(_sample("sample-fmnist", "fmnist.npz", (1, 28, 28), FMNIST_CLASSES))
