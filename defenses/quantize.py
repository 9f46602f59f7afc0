"""Uniform b-bit quantization of the update (QSGD-style, Alistarh et al., NeurIPS 2017).

Each tensor of the update ``delta`` is mapped onto ``2**bits`` evenly spaced levels between
its minimum and maximum (``step = (max - min) / (2**bits - 1)``). Deterministic rounding
moves each entry to the nearest level (error <= step / 2); stochastic rounding moves it up
with probability equal to its fractional position (error < step, unbiased: E[q] = delta).
The server sees only the quantized update: levels plus one (min, step) pair per tensor.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from defenses.base import ClientMod, Defense
from defenses.config import MAX_QUANTIZE_BITS, DefenseConfig
from defenses.registry import DEFENSES
from defenses.update_mod import UpdateMod
from fl.core.errors import ConfigError


def quantize(delta: np.ndarray, bits: int, *, uniform: np.ndarray | None = None) -> np.ndarray:
    """Quantize ``delta`` to ``2**bits`` levels; ``uniform`` (U[0,1) of the same shape) rounds stochastically."""
    if delta.size == 0 or delta.min() == delta.max():
        return delta.copy()
    lo, hi = float(delta.min()), float(delta.max())
    step = (hi - lo) / (2**bits - 1)
    position = (delta - lo) / step
    levels = np.floor(position + uniform) if uniform is not None else np.rint(position)
    return (lo + np.clip(levels, 0, 2**bits - 1) * step).astype(delta.dtype)


def quantize_update(deltas: list[np.ndarray], *, bits: int, stochastic: bool) -> list[np.ndarray]:
    """:func:`quantize` every tensor; stochastic rounding draws from NumPy's global RNG.

    That is the stream Flower's own mods draw from; each client seeds it from its own secret key
    and participation counter before its reply leaves.
    """
    return [quantize(d, bits, uniform=np.random.random_sample(d.shape) if stochastic else None) for d in deltas]


class QuantizeDefense(Defense):
    """Each client replies ``received + quantize(delta)``."""

    name = "quantize"

    def __init__(self, *, bits: int, stochastic: bool) -> None:
        if not 1 <= bits <= MAX_QUANTIZE_BITS:
            raise ConfigError(
                f"defense option quantize_bits={bits!r} is invalid; expected an integer in [1, {MAX_QUANTIZE_BITS}]"
            )
        self.bits = bits
        self.stochastic = stochastic

    def client_mods(self) -> list[ClientMod]:
        return [UpdateMod("quantize", partial(quantize_update, bits=self.bits, stochastic=self.stochastic))]


@DEFENSES.register("quantize")
def build_quantize(cfg: DefenseConfig) -> Defense:
    """``cfg.quantize_bits``-bit update quantization, stochastic if ``cfg.stochastic_rounding``."""
    return QuantizeDefense(bits=cfg.quantize_bits, stochastic=cfg.stochastic_rounding)
