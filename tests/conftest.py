"""Common fixtures: the real datasets where a data folder exists (skipped cleanly where absent), and
the command line of a small ``fedleak simulate`` run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SIMULATE_DEFAULTS = {
    "dataset": "sample",
    "model": "mlp",
    "clients": 2,
    "rounds": 1,
    "capture": "all",
    "engine": "inline",
}
"""A small federation: the bundled sample, two clients, one round, every update captured, no Ray."""


def real_data_root() -> Path | None:
    """``$FEDLEAK_TEST_DATA``, else ``$FEDLEAK_DATA``, else ``data/`` in the checkout."""
    env = os.environ.get("FEDLEAK_TEST_DATA") or os.environ.get("FEDLEAK_DATA")
    root = Path(env) if env else REPO / "data"
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("real data not found: set FEDLEAK_TEST_DATA (or FEDLEAK_DATA) or put it in data/")
    return root


@pytest.fixture(scope="session")
def optional_data_root() -> Path | None:
    """The real-data folder, or None (for fixtures that fall back to the bundled samples)."""
    return real_data_root()


@pytest.fixture
def simulate_args() -> Callable[..., list[str]]:
    """``simulate_args(out, client_examples=8, ...)`` -> the arguments of ``fedleak --device cpu simulate``
    over :data:`SIMULATE_DEFAULTS`, one option per keyword (``client_examples=8``: ``--client-examples 8``)."""

    def build(out: Path, **options: object) -> list[str]:
        args = ["--device", "cpu", "simulate"]
        for name, value in {**SIMULATE_DEFAULTS, **options}.items():
            args += ["--" + name.replace("_", "-"), str(value)]
        return [*args, "--out", str(out)]

    return build


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
