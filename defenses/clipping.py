"""Flower's DP clipping without the crash on a zero update.

Every clipping path of Flower 1.42 that fedleak uses (server-side fixed and adaptive clipping,
``fixedclipping_mod``, ``adaptiveclipping_mod``, ``LocalDpMod``) scales an update by
``min(1, clipping_norm / norm)`` (``flwr/supercore/differential_privacy.py``), so an update of
norm exactly 0 (a client whose weights did not move) raises ``ZeroDivisionError`` and stops the
federation. A zero update is within any bound and must pass unchanged. Rather than copy or patch
Flower's code, fedleak hands it the bound as a :class:`ClippingNorm`, a float whose ratio to a
zero norm is ``+inf``: ``min(1, inf) = 1`` leaves the update as is (and counts it as unclipped
for adaptive clipping), and every other operation is plain float arithmetic, so results are
bit-identical to Flower's whenever no update is zero.
"""

from __future__ import annotations

import functools
import math

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from defenses.base import ClientMod


class ClippingNorm(float):
    """A clipping bound ``c > 0`` whose ``c / 0`` is ``+inf`` (the limit), not ``ZeroDivisionError``."""

    def __truediv__(self, other: float) -> float:
        if other == 0:
            return math.inf
        return float.__truediv__(self, other)


class ZeroSafeClipping:
    """Mixin keeping a Flower class's ``clipping_norm`` attribute a :class:`ClippingNorm`.

    A property, so that Flower's own assignments (``__init__``, the adaptive update
    ``clipping_norm *= ...``) are wrapped too.
    """

    _clipping_norm: ClippingNorm

    @property
    def clipping_norm(self) -> float:
        return self._clipping_norm

    @clipping_norm.setter
    def clipping_norm(self, value: float) -> None:
        self._clipping_norm = ClippingNorm(value)


def zero_safe_clipping_mod(mod: ClientMod) -> ClientMod:
    """Flower's ``fixedclipping_mod``/``adaptiveclipping_mod`` with the received bound as a :class:`ClippingNorm`.

    The bound arrives as a plain float in the train message's config (the server's type does not
    survive serialization), so it is re-wrapped there, in place, before ``mod`` reads it.
    """

    @functools.wraps(mod)
    def guarded(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        for config in msg.content.config_records.values():
            bound = config.get(KEY_CLIPPING_NORM)
            if isinstance(bound, int | float):
                config[KEY_CLIPPING_NORM] = ClippingNorm(bound)
        return mod(msg, ctxt, call_next)

    return guarded
