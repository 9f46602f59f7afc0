"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), read from the official python pickles.

The pickles are unpickled with :class:`fl.data.unpickle.RestrictedUnpickler`. Batches shorter than
the official 10000 images (partial copies) are accepted; the count found is logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fl.core.errors import DataError
from fl.data.source import DatasetSource, Reader, Resource, register
from fl.data.unpickle import load_pickle

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# fmt: off
CIFAR100_CLASSES = (  # the fine label names, in label order (alphabetical)
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
# fmt: on
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CIFAR100_FILES: dict[str, tuple[str, ...]] = {"train": ("train",), "test": ("test",)}


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise DataError(f"{path} has no {key!r} entry (keys: {', '.join(map(str, batch))})")
    return batch[key]


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch: uint8 images ``(N, 3, 32, 32)`` and int64 labels ``(N,)``."""
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dict (got {type(batch).__name__})")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data = _field(batch, "data", path)
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {getattr(data, 'shape', type(data))}")
    if labels.shape != (len(data),):
        raise DataError(f"{path} holds {len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_class_names(path: Path, key: str) -> tuple[str, ...]:
    meta = load_pickle(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path} does not hold a CIFAR meta dict")
    meta = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in meta.items()}
    names = _field(meta, key, path)
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _reader(files: dict[str, tuple[str, ...]], label_key: str, meta: str, names_key: str) -> Reader:
    """A reader concatenating ``files[split]`` and taking class names from ``meta``."""

    def read(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        batches = [read_batch(folder / f, label_key) for f in files[split]]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        return images, labels, read_class_names(folder / meta, names_key)

    return read


CIFAR10 = register(
    DatasetSource(
        name="cifar10",
        shape=(3, 32, 32),
        classes=CIFAR10_CLASSES,
        sizes={"train": 50000, "test": 10000},
        folder="cifar-10-batches-py",
        files={s: (*f, "batches.meta") for s, f in CIFAR10_FILES.items()},
        reader=_reader(CIFAR10_FILES, "labels", "batches.meta", "label_names"),
        resources=(
            Resource(
                "cifar-10-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                "c58f30108f718f92721af3b95e74349a",
                extract=True,
            ),
        ),
    )
)
CIFAR100 = register(
    DatasetSource(
        name="cifar100",
        shape=(3, 32, 32),
        classes=CIFAR100_CLASSES,
        sizes={"train": 50000, "test": 10000},
        folder="cifar-100-python",
        files={s: (*f, "meta") for s, f in CIFAR100_FILES.items()},
        reader=_reader(CIFAR100_FILES, "fine_labels", "meta", "fine_label_names"),
        resources=(
            Resource(
                "cifar-100-python.tar.gz",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                "eb9058c3a382ffc7106e4002c42a8d85",
                extract=True,
            ),
        ),
    )
)
