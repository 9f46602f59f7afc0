"""Datasets by name and their federated partitions.

>>> from fl.data import load_dataset, partition
>>> train = load_dataset("sample", split="train")          # bundled, needs no data directory
>>> parts = partition(train.labels, 4, scheme="dirichlet", alpha=0.5, seed=0)
>>> client0 = train.subset(parts[0])
"""

from fl.data import bundled, cifar, mnist  # noqa: F401  (each module registers its datasets)
from fl.data.dataset import ImageDataset
from fl.data.load import load_dataset
from fl.data.partition import PARTITIONS, partition
from fl.data.source import DATASETS, SPLITS, DatasetSource, resolve_root

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "SPLITS",
    "DatasetSource",
    "ImageDataset",
    "load_dataset",
    "partition",
    "resolve_root",
]
