"""Top-k sparsification of the update (gradient pruning as a defense, Zhu et al., NeurIPS 2019).

DLG ("Deep Leakage from Gradients") reports that pruning 20 % or more of the gradient's
smallest-magnitude entries starts to stop the attack; Aji and Heafield (EMNLP 2017) use the
same top-k rule to save bandwidth. Here it acts on the client's outgoing update
``delta = new - received weights``, per tensor: ``prune_ratio`` is the fraction of entries ZEROED,
so ``k = n - floor(prune_ratio * n)`` entries of largest ``|delta|`` are kept.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from defenses.base import ClientMod, Defense
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from defenses.update_mod import UpdateMod
from fl.core.errors import ConfigError


def kept_entries(size: int, prune_ratio: float) -> int:
    """How many of ``size`` entries survive pruning ``prune_ratio`` of them (at least one)."""
    return max(1, size - math.floor(prune_ratio * size)) if size else 0


def topk_sparsify(delta: np.ndarray, prune_ratio: float) -> np.ndarray:
    """Keep exactly the k largest-magnitude entries of ``delta`` (ties broken by position), zero the rest."""
    flat = delta.reshape(-1)
    k = kept_entries(flat.size, prune_ratio)
    if k == flat.size:
        return delta.copy()
    keep = np.argpartition(np.abs(flat), flat.size - k, kind="introselect")[flat.size - k :]
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(delta.shape)


def prune_update(deltas: list[np.ndarray], *, prune_ratio: float) -> list[np.ndarray]:
    """:func:`topk_sparsify` applied to every tensor of an update."""
    return [topk_sparsify(d, prune_ratio) for d in deltas]


class PruneDefense(Defense):
    """Each client replies ``received + topk(delta)``; the server sees a sparse update."""

    name = "prune"

    def __init__(self, *, prune_ratio: float) -> None:
        if not 0.0 <= prune_ratio < 1.0:
            raise ConfigError(f"defense option prune_ratio={prune_ratio!r} is invalid; expected a value in [0, 1)")
        self.prune_ratio = prune_ratio

    def client_mods(self) -> list[ClientMod]:
        return [UpdateMod("prune", partial(prune_update, prune_ratio=self.prune_ratio))]


@DEFENSES.register("prune")
def build_prune(cfg: DefenseConfig) -> Defense:
    """Top-k update sparsification zeroing ``cfg.prune_ratio`` of every tensor's entries."""
    return PruneDefense(prune_ratio=cfg.prune_ratio)
