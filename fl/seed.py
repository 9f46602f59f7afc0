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
