"""Partitions: disjoint, complete, seeded; Dirichlet skew grows as alpha shrinks; shards limit classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fl.core.errors import ConfigError
from fl.data import PARTITIONS, partition

LABELS = np.random.default_rng(0).integers(0, 10, size=2000)
OPTIONS = {"iid": {}, "dirichlet": {"alpha": 0.5}, "shards": {"shards_per_client": 2}}


def max_class_share(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean over clients of the share of the client's most frequent class."""
    return float(np.mean([np.bincount(labels[p]).max() / len(p) for p in parts]))


@pytest.mark.parametrize("scheme", PARTITIONS.names())
def test_data_partition_is_disjoint_complete_and_seeded(scheme: str) -> None:
    parts = partition(LABELS, 10, scheme=scheme, seed=3, **OPTIONS[scheme])
    assert len(parts) == 10 and all(p.dtype == np.int64 and len(p) > 0 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))
    again = partition(LABELS, 10, scheme=scheme, seed=3, **OPTIONS[scheme])
    other = partition(LABELS, 10, scheme=scheme, seed=4, **OPTIONS[scheme])
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_data_iid_sizes_differ_by_at_most_one_and_accepts_tensors() -> None:
    parts = partition(torch.from_numpy(LABELS[:1003]), 10, scheme="iid")
    assert {len(p) for p in parts} == {100, 101}
    assert max_class_share(parts, LABELS[:1003]) < 0.3


def test_data_dirichlet_small_alpha_is_more_skewed() -> None:
    skew = {
        alpha: np.mean(
            [max_class_share(partition(LABELS, 10, scheme="dirichlet", alpha=alpha, seed=s), LABELS) for s in range(3)]
        )
        for alpha in (0.1, 1.0, 100.0)
    }  # fmt: skip
    assert skew[0.1] > 0.5 > skew[1.0] > skew[100.0]
    assert skew[100.0] < 0.2  # near the uniform 0.1 plus sampling noise


def test_data_dirichlet_respects_min_size() -> None:
    sizes = [len(p) for p in partition(LABELS, 20, scheme="dirichlet", alpha=0.1, min_size=1, seed=0)]
    assert min(sizes) < 40  # unconstrained, a client ends up small ...
    parts = partition(LABELS, 20, scheme="dirichlet", alpha=0.1, min_size=40, seed=0)
    assert min(len(p) for p in parts) >= 40  # ... redrawn until every client holds 40
    with pytest.raises(ConfigError, match="min_size 150 x 20 clients exceeds the 2000 samples"):
        partition(LABELS, 20, scheme="dirichlet", min_size=150)
    with pytest.raises(ConfigError, match="fewer than 19 samples in 1000 draws; use a larger alpha"):
        partition(LABELS[:200], 10, scheme="dirichlet", alpha=0.01, min_size=19)


@pytest.mark.parametrize(("clients", "per_client"), [(5, 2), (10, 1), (20, 3)])
def test_data_shards_limit_each_client_to_its_shard_count(clients: int, per_client: int) -> None:
    parts = partition(LABELS, clients, scheme="shards", shards_per_client=per_client, seed=1)
    assert all(len(np.unique(LABELS[p])) <= per_client for p in parts)
    sizes = [len(p) for p in parts]
    assert max(sizes) <= 1.3 * min(sizes)  # shards are near-equal in size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"scheme": "pathological"},
            "unknown partition scheme 'pathological'; valid choices: iid, dirichlet, shards",
        ),
        ({"num_clients": 0}, "positive integer, got 0"),
        ({"num_clients": 2001}, "cannot split 2000 samples among 2001 clients"),
        ({"scheme": "dirichlet", "alpha": 0.0}, "alpha must be a positive number, got 0.0"),
        ({"scheme": "dirichlet", "alpha": float("nan")}, "alpha must be a positive number"),
        (
            {"scheme": "shards", "shards_per_client": 0},
            "shards per client must be a positive integer",
        ),
        ({"scheme": "shards", "num_clients": 4}, "8 shards cannot cover 10 classes"),
        (
            {"scheme": "shards", "num_clients": 1000, "shards_per_client": 3},
            "3000 shards, more than the 2000 samples",
        ),
    ],
)
def test_data_partition_bad_values_fail_clearly(kwargs: dict, message: str) -> None:
    args = {"num_clients": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        partition(LABELS, args.pop("num_clients"), **args)


def test_data_partition_rejects_non_integer_labels() -> None:
    with pytest.raises(ConfigError, match="1-d integer array"):
        partition(np.zeros((4, 2)), 2)
