"""Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al. 1998), gzip or plain."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from fl.core.errors import DataError

UINT8 = 0x08


def read_idx(path: str | Path, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz`` or plain) with ``ndim`` dimensions.

    Raises :class:`DataError` naming the file for a bad magic number or truncated contents.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    expected_magic = (UINT8 << 8) | ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != expected_magic:
        raise DataError(
            f"{path} is not an IDX file of {ndim}-d unsigned bytes (magic {magic}, expected {expected_magic})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(dims)
    if len(raw) - header < size:
        raise DataError(
            f"{path} is truncated: header says {'x'.join(map(str, dims))} "
            f"({size} bytes) but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=header).reshape(dims)
