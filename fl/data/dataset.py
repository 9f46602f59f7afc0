"""The in-memory image dataset every fedleak component consumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fl.core.errors import DataError


@dataclass(frozen=True)
class ImageDataset:
    """Images in ``[0, 1]`` (float32, ``(N, C, H, W)``, not normalised) and int64 labels."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise DataError(
                f"{self.name}: images must be float32 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.int64:
            raise DataError(
                f"{self.name}: labels must be int64 of shape ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise DataError(f"{self.name}: labels fall outside 0..{len(self.classes) - 1}")

    @classmethod
    def from_uint8(cls, name: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> ImageDataset:
        """Build from ``uint8`` pixels ``(N, C, H, W)`` (scaled to ``[0, 1]``) and integer labels."""
        pixels = torch.from_numpy(np.asarray(images, dtype=np.float32)).div_(255.0)
        targets = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
        return cls(name=name, images=pixels, labels=targets, classes=tuple(classes))

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's shape ``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ImageDataset:
        """The images at ``indices`` (e.g. one client's share from :func:`fl.data.partition`)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageDataset(name=self.name, images=self.images[idx], labels=self.labels[idx], classes=self.classes)

    def class_counts(self) -> np.ndarray:
        """Number of images per class, length :attr:`num_classes`."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)

    def __repr__(self) -> str:
        c, h, w = self.shape
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={c}x{h}x{w}, classes={self.num_classes})"
