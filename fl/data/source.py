"""Dataset sources: where a dataset lives on disk, how it is read and where it comes from.

Each dataset is one :class:`DatasetSource` registered in :data:`DATASETS`; a new dataset is a
reader function plus one ``register(DatasetSource(...))`` call. Folder names follow torchvision, so one
root directory serves fedleak and torchvision alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fl.core.errors import ConfigError
from fl.core.registry import Registry

SPLITS = ("train", "test")

Reader = Callable[[Path, str], tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]]
"""``(folder, split) -> (uint8 images (N, C, H, W), integer labels (N,), class names or None)``."""


@dataclass(frozen=True)
class Resource:
    """One file of an official distribution: its URLs (mirrors, in order) and MD5."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    extract: bool = False  # a tar.gz archive whose contents belong in the root


@dataclass(frozen=True)
class DatasetSource:
    """A dataset's identity (shape, classes, nominal sizes) and how to obtain its images."""

    name: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    sizes: dict[str, int]  # nominal number of images per split of the full dataset
    folder: str  # relative to the data root (an absolute package path for bundled sets)
    files: dict[str, tuple[str, ...]]  # split -> files the reader needs (in ``folder``)
    reader: Reader
    resources: tuple[Resource, ...] = ()
    bundled: bool = False  # shipped inside the package: needs no data root
    # file -> other accepted names (e.g. the decompressed ``*-ubyte`` for ``*-ubyte.gz``)
    alternatives: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def folder_path(self, root: Path) -> Path:
        """Where this dataset's files live under ``root``."""
        return root / self.folder

    def find(self, root: Path, filename: str) -> Path | None:
        """The first existing variant of ``filename`` (e.g. plain or ``.gz``), or None."""
        for candidate in (filename, *self.alternatives.get(filename, ())):
            path = self.folder_path(root) / candidate
            if path.is_file():
                return path
        return None

    def missing(self, root: Path, split: str | None = None) -> list[str]:
        """Files of ``split`` (all splits when None) that are absent under ``root``."""
        if self.bundled:
            return []
        splits = SPLITS if split is None else (split,)
        needed = dict.fromkeys(f for s in splits for f in self.files[s])
        return [f for f in needed if self.find(root, f) is None]


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register(source: DatasetSource) -> DatasetSource:
    """Add ``source`` to :data:`DATASETS` under its name."""
    return DATASETS.register(source.name)(source)


def resolve_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$FEDLEAK_DATA``, else ``$XDG_CACHE_HOME/fedleak/data``
    (``~/.cache/fedleak/data`` when ``XDG_CACHE_HOME`` is unset). Nothing is created here."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get("FEDLEAK_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "fedleak" / "data"


def check_split(split: str) -> str:
    """``split`` itself, or a :class:`ConfigError` naming the valid splits."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    return split
