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


MT_WORDS, MT_OFFSET = 624, 24  # torch's CPU generator state: 24 bytes of header, then 624 uint64-held MT words


def private_generator(seed: int, *keys: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator whose whole state comes from a child of a private seed of any size.

    ``manual_seed`` on torch's CPU generator (MT19937) keeps only the low 32 bits of its seed: a
    server could try them all against a client's noise. Its 624-word state is filled from the
    ``SeedSequence`` instead; a CUDA generator (Philox) takes a full 64-bit seed.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_int(k) for k in keys))
    gen = torch.Generator(device=device)
    if gen.device.type != "cpu":
        gen.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0]))
        return gen
    gen.manual_seed(0)  # a valid header: no cached normal sample, a twist due before the next draw
    state = gen.get_state().clone()
    words = ss.generate_state(MT_WORDS, dtype=np.uint32).astype(np.uint64)
    state[MT_OFFSET : MT_OFFSET + 8 * MT_WORDS] = torch.from_numpy(words.view(np.uint8))
    gen.set_state(state)
    return gen


def private_numpy_seed(seed: int, *keys: int | str) -> list[int]:
    """Four 32-bit words of a private seed's child, for ``np.random.seed`` (which takes an array)."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_int(k) for k in keys))
    return [int(w) for w in ss.generate_state(4, dtype=np.uint32)]
