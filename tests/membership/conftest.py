"""Membership tests train tiny models on one thread; their data is the real data folder where
there is one, else a synthetic one in the official formats (``synthetic_data.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def data_root(optional_data_root, tmp_path_factory) -> Path:
    """The real data folder, or a synthetic CIFAR-10 one the tests make."""
    if optional_data_root is not None and (optional_data_root / "cifar-10-batches-py").is_dir():
        return optional_data_root
    from synthetic_data import make_data_root

    return make_data_root(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
