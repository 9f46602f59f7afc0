"""A restricted unpickler for the CIFAR python pickles, which are untrusted input.

``pickle.load`` runs whatever callable a file names; the CIFAR batches only need numpy's
array reconstruction, so :class:`RestrictedUnpickler` admits exactly that and refuses the rest
before anything runs (the approach the Python docs recommend under "Restricting Globals").
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from fl.core.errors import DataError

ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),  # arrays pickled by numpy < 2
        ("numpy._core.multiarray", "_reconstruct"),  # arrays pickled by numpy >= 2
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 arrays, numpy < 2
        ("numpy._core.numeric", "_frombuffer"),  # protocol 5 arrays, numpy >= 2
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``, which Python 3 protocol-2 pickles use for ``bytes``;
    only the ``latin1`` codec those pickles name is admitted."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` (and a latin1-only ``_codecs.encode``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``latin1``, as for Python 2 pickles).

    Any failure (missing, truncated, garbled or refused) is one :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return RestrictedUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # a garbled pickle can fail in many ways; all mean a bad file
        raise DataError(f"{path} is not a valid CIFAR pickle: {type(exc).__name__}: {exc}") from None
