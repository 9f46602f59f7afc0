"""Local differential privacy on the update with Flower's ``LocalDpMod``.

Each client clips its update ``delta`` to L2 norm ``clipping_norm`` (C) and adds Gaussian noise of
std ``sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon`` to every entry before it leaves (the
classic Gaussian mechanism, Dwork and Roth 2014, Thm A.1, stated for epsilon < 1), so even a
curious server sees only a noised update. Under local DP the neighbouring inputs are any two
clipped updates, so the L2 sensitivity is ``2 C``: the default ``sensitivity`` is ``2 C``, and a
smaller one is refused (it would add too little noise for the epsilon it names). Every
participation is one release: the reply's ``epsilon`` composes all of this client's releases so
far with RDP (Mironov 2017) for the noise actually added (noise multiplier = std / (2 C)), which
is valid for any per-round epsilon and tighter than adding the per-round epsilons up. The
epsilon protects a whole client (all of its data), against the server itself.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any, cast

from flwr.clientapp.mod import LocalDpMod

from defenses.accounting import gaussian_epsilon
from defenses.base import ClientMod, Defense, LocalTraining
from defenses.clipping import ZeroSafeClipping
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from defenses.update_mod import train_only
from fl.core.errors import ConfigError

RELEASES_KEY = "ldp_releases"  # client_state key: how many noised updates this client has sent


def ldp_noise_multiplier(*, epsilon: float, delta: float, sensitivity: float, clipping_norm: float) -> float:
    """LocalDpMod's noise std over the true L2 sensitivity 2C: ``sensitivity sqrt(2 ln(1.25/delta)) / (epsilon 2C)``."""
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon / (2 * clipping_norm)


class ZeroSafeLocalDpMod(ZeroSafeClipping, LocalDpMod):
    """Flower's ``LocalDpMod`` passing a zero update through its clipping (noise is still added)."""


class LdpDefense(Defense):
    """Clip and noise every client's update on the client (Flower's ``LocalDpMod``, zero-safe)."""

    name = "ldp"
    privacy_unit = "client-local"

    def __init__(self, *, clipping_norm: float, sensitivity: float | None, epsilon: float, delta: float) -> None:
        if sensitivity is None:
            sensitivity = 2 * clipping_norm
        if sensitivity < 2 * clipping_norm:
            raise ConfigError(
                f"defense option sensitivity={sensitivity!r} is invalid; expected >= 2 x clipping_norm = "
                f"{2 * clipping_norm!r} (two updates clipped to norm C can differ by 2C)"
            )
        self.clipping_norm = clipping_norm
        self.sensitivity = sensitivity
        self.epsilon = epsilon
        self.delta = delta

    def client_mods(self) -> list[ClientMod]:
        mod = ZeroSafeLocalDpMod(self.clipping_norm, self.sensitivity, self.epsilon, self.delta)
        return [train_only(mod)]

    def finish_local_training(
        self, training: LocalTraining, *, client_state: MutableMapping[str, Any]
    ) -> dict[str, float | list[float] | list[int]]:
        releases = int(client_state.get(RELEASES_KEY, 0)) + 1  # the mod noises this reply
        client_state[RELEASES_KEY] = releases
        return {
            "epsilon": cast(float, self.client_epsilon(client_state)),  # releases >= 1 here
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "releases": float(releases),
        }

    @property
    def noise_multiplier(self) -> float:
        """LocalDpMod's noise std over the true sensitivity 2C."""
        return ldp_noise_multiplier(
            epsilon=self.epsilon, delta=self.delta, sensitivity=self.sensitivity, clipping_norm=self.clipping_norm
        )

    def client_epsilon(self, client_state: MutableMapping[str, Any]) -> float | None:
        releases = int(client_state.get(RELEASES_KEY, 0))
        return (
            gaussian_epsilon(noise_multiplier=self.noise_multiplier, releases=releases, delta=self.delta)
            if releases
            else None
        )


@DEFENSES.register("ldp")
def build_ldp(cfg: DefenseConfig) -> Defense:
    """LocalDpMod with ``cfg.clipping_norm``, ``cfg.sensitivity``, ``cfg.epsilon``, ``cfg.delta``."""
    return LdpDefense(
        clipping_norm=cfg.clipping_norm, sensitivity=cfg.sensitivity, epsilon=cfg.epsilon, delta=cfg.delta
    )
