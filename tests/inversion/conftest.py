"""Small seeded victims shared by the inversion tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace

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


# The labels of the first 56 images of CIFAR-10's test_batch. Each of these images is among the
# first 10 of its class in file order, which is what the bundled sample holds (per class, the
# first 8 in its train split, the next 2 in its test split): so the head of the real test split is
# rebuilt exactly from the sample, and a clone without data runs the same victims.
CIFAR_TEST_HEAD_LABELS = (
    3,
    8,
    8,
    0,
    6,
    6,
    1,
    6,
    3,
    1,
    0,
    9,
    5,
    7,
    9,
    8,
    5,
    7,
    8,
    6,
    7,
    0,
    4,
    9,
    5,
    2,
    4,
    0,
    9,
    6,
    6,
    5,
    4,
    5,
    9,
    2,
    4,
    1,
    9,
    5,
    4,
    6,
    5,
    6,
    0,
    9,
    3,
    9,
    7,
    6,
    9,
    8,
    0,
    3,
    8,
    8,
)


def cifar_test_head_from_sample() -> SimpleNamespace:
    """CIFAR-10 test images 0..55 with their labels, taken from the bundled sample."""
    from fl.data import load_dataset

    train, test = load_dataset("sample", split="train"), load_dataset("sample", split="test")
    per_train = int((train.labels == 0).sum())
    seen: Counter[int] = Counter()
    images = []
    for c in CIFAR_TEST_HEAD_LABELS:
        k, seen[c] = seen[c], seen[c] + 1
        split, j = (train, k) if k < per_train else (test, k - per_train)
        images.append(split.images[(split.labels == c).nonzero().flatten()[j]])
    return SimpleNamespace(images=torch.stack(images), labels=torch.tensor(CIFAR_TEST_HEAD_LABELS))


@pytest.fixture(scope="session")
def cifar_sample_head() -> SimpleNamespace:
    return cifar_test_head_from_sample()


@pytest.fixture(scope="session")
def cifar(optional_data_root, cifar_sample_head):
    """The real CIFAR-10 test split where a data folder holds it, else its first 56 images rebuilt
    from the bundled sample (the tests use the first 48)."""
    from fl.core.errors import DataError
    from fl.data import load_dataset

    root = optional_data_root
    if root is not None:
        try:
            return load_dataset("cifar10", split="test", root=root, download=False)
        except DataError:
            pass
    return cifar_sample_head


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
            net,
            images.to(dtype),
            labels,
            model_name=model,
            model_options=options,
            generator=torch.Generator().manual_seed(client_seed),
            **kwargs,
        )

    return make
