"""Small seeded victims shared by the inversion tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from attacks.inversion import Observation, observe_client
from fl.models import build_model

SMALL_MLP = {"hidden": 64, "depth": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these small problems gain nothing from more, and on a shared
    2-core machine OpenMP barriers between two threads made them up to 9x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cifar(data_root):
    from fl.data import load_dataset

    return load_dataset("cifar10", split="test", root=data_root)


@pytest.fixture
def make_obs() -> Callable[..., Observation]:
    """``make_obs(images, labels, model=..., dropout=..., **client_kwargs)`` -> an honest client's update."""

    def make(
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        model: str = "mlp",
        options: dict | None = None,
        dropout: float = 0.25,
        client_seed: int = 1,
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ) -> Observation:
        options = dict(SMALL_MLP if options is None and model == "mlp" else options or {})
        torch.manual_seed(0)
        net = build_model(model, in_shape=tuple(images.shape[1:]), num_classes=10, dropout=dropout, **options)
        net = net.to(dtype)
        return observe_client(
            net, images.to(dtype), labels, model_name=model, model_options=options,
            generator=torch.Generator().manual_seed(client_seed), **kwargs,
        )

    return make
