"""Seeding helpers: one seed drives partitions, initial weights and attack randomness."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch global RNGs (CPU results are then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A private torch generator, so components never share (or reseed) a global RNG."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def derive_seed(seed: int, *keys: int | str) -> int:
    """Deterministic child seed for a sub-component (client id, shadow model index, ...)."""
    ss = np.random.SeedSequence([seed % 2**32, *(_key_int(k) for k in keys)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _key_int(key: int | str) -> int:
    if isinstance(key, int):
        return key % 2**32
    return zlib.crc32(key.encode())


def private_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit child seed of a private seed of any size (a client's 128-bit key).

    Unlike :func:`derive_seed`, which folds its parent to 32 bits and returns 32 bits, this keeps
    the parent's entropy, so nobody can enumerate the child seeds of an unknown key.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_int(k) for k in keys))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def private_numpy_seed(seed: int, *keys: int | str) -> list[int]:
    """Four 32-bit words of a private seed's child, for ``np.random.seed`` (which takes an array)."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_int(k) for k in keys))
    return [int(w) for w in ss.generate_state(4, dtype=np.uint32)]
