"""Split a dataset's indices among federated clients.

Schemes:
- ``iid``: a seeded random permutation cut into near-equal parts.
- ``dirichlet``: label skew of Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification": for every class, client proportions are drawn
  from Dirichlet(``alpha``); small ``alpha`` concentrates each class on few clients. Draws are
  repeated until every client holds at least ``min_size`` samples.
- ``shards``: McMahan et al. 2017 (FedAvg), "Communication-Efficient Learning of Deep Networks from
  Decentralized Data": samples sorted by label are cut into ``num_clients * shards_per_client``
  single-class shards of near-equal size, and each client gets ``shards_per_client`` of them at
  random, so it sees at most ``shards_per_client`` classes.

Every scheme returns disjoint index arrays (sorted, int64) that together cover all samples, and
the same ``seed`` gives the same split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fl.core.errors import ConfigError
from fl.core.registry import Registry

Scheme = Callable[..., list[np.ndarray]]
PARTITIONS: Registry[Scheme] = Registry("partition scheme")

MAX_DIRICHLET_DRAWS = 1000


def partition(
    labels: np.ndarray | object,
    num_clients: int,
    *,
    scheme: str = "iid",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int = 0,
    min_size: int | None = None,
) -> list[np.ndarray]:
    """Indices of the samples of each of ``num_clients`` clients (see the module docstring).

    ``labels`` is any integer array-like (numpy, torch, list). ``min_size`` (dirichlet only)
    defaults to ``min(10, n // (2 * num_clients))``, at least 1.
    """
    fn = PARTITIONS.get(scheme)
    y = _as_labels(labels)
    if int(num_clients) != num_clients or num_clients < 1:
        raise ConfigError(f"number of clients must be a positive integer, got {num_clients!r}")
    if num_clients > len(y):
        raise ConfigError(f"cannot split {len(y)} samples among {num_clients} clients: more clients than samples")
    rng = np.random.default_rng(seed)
    if scheme == "dirichlet":
        parts = fn(y, num_clients, rng, alpha=alpha, min_size=min_size)
    elif scheme == "shards":
        parts = fn(y, num_clients, rng, shards_per_client=shards_per_client)
    else:
        parts = fn(y, num_clients, rng)
    return [np.sort(p).astype(np.int64) for p in parts]


def _as_labels(labels: object) -> np.ndarray:
    y = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ConfigError(f"labels must be a 1-d integer array, got dtype {y.dtype} shape {y.shape}")
    if y.size and y.min() < 0:
        raise ConfigError("labels must be non-negative class indices")
    return y.astype(np.int64)


@PARTITIONS.register("iid")
def iid(y: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Uniformly random, near-equal parts."""
    return np.array_split(rng.permutation(len(y)), num_clients)


@PARTITIONS.register("dirichlet")
def dirichlet(
    y: np.ndarray, num_clients: int, rng: np.random.Generator, *, alpha: float, min_size: int | None
) -> list[np.ndarray]:
    """Per-class Dirichlet(alpha) proportions (Hsu et al. 2019), redrawn until every client
    holds ``min_size`` samples."""
    if not alpha > 0 or not np.isfinite(alpha):
        raise ConfigError(f"dirichlet alpha must be a positive number, got {alpha!r}")
    need = max(1, min(10, len(y) // (2 * num_clients))) if min_size is None else int(min_size)
    if need * num_clients > len(y):
        raise ConfigError(f"dirichlet min_size {need} x {num_clients} clients exceeds the {len(y)} samples")
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    for _ in range(MAX_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = np.round(np.cumsum(share)[:-1] * len(idx)).astype(np.int64)
            for client, piece in enumerate(np.split(idx, cuts)):
                parts[client].append(piece)
        merged = [np.concatenate(p) for p in parts]
        if min(len(p) for p in merged) >= need:
            return merged
    raise ConfigError(
        f"dirichlet partition with alpha={alpha} left a client with fewer than {need} samples "
        f"in {MAX_DIRICHLET_DRAWS} draws; use a larger alpha or fewer clients"
    )


@PARTITIONS.register("shards")
def shards(y: np.ndarray, num_clients: int, rng: np.random.Generator, *, shards_per_client: int) -> list[np.ndarray]:
    """Single-class shards dealt at random, ``shards_per_client`` each (McMahan et al. 2017)."""
    if int(shards_per_client) != shards_per_client or shards_per_client < 1:
        raise ConfigError(f"shards per client must be a positive integer, got {shards_per_client!r}")
    total = num_clients * shards_per_client
    classes, counts = np.unique(y, return_counts=True)
    if total > len(y):
        raise ConfigError(
            f"{num_clients} clients x {shards_per_client} shards = {total} shards, more than the {len(y)} samples"
        )
    if total < len(classes):
        raise ConfigError(
            f"{num_clients} clients x {shards_per_client} shards = {total} shards cannot cover "
            f"{len(classes)} classes with single-class shards; use more clients or shards"
        )
    per_class = _shards_per_class(counts, total)
    pieces = [
        piece
        for c, k in zip(classes, per_class, strict=True)
        for piece in np.array_split(rng.permutation(np.flatnonzero(y == c)), k)
    ]
    order = rng.permutation(total).reshape(num_clients, shards_per_client)
    return [np.concatenate([pieces[s] for s in row]) for row in order]


def _shards_per_class(counts: np.ndarray, total: int) -> np.ndarray:
    """Shards per class (at least one each, summing to ``total``), making shard sizes as equal
    as possible: each extra shard goes to the class whose shards are currently largest."""
    k = np.ones(len(counts), dtype=np.int64)
    for _ in range(total - len(counts)):
        k[np.argmax(counts / k)] += 1
    return k
