"""Privacy accounting: pure functions over a mechanism's history, backed by Opacus.

A history is the list of ``(noise_multiplier, sample_rate, steps)`` triples that Opacus
accountants keep (``IAccountant.history``): it is JSON-ready, so a client's cumulative
budget survives checkpoints, and rebuilding the accountant from it gives the same epsilon.
RDP: Mironov (CSF 2017) with the subsampled Gaussian of Mironov, Talwar and Zhang (2019);
PRV: Gopi, Lee and Wutschitz (NeurIPS 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from opacus.accountants import IAccountant, create_accountant
from opacus.accountants.utils import get_noise_multiplier

from defenses.config import ACCOUNTANTS
from fl.core.errors import ConfigError

History = list[tuple[float, float, int]]
OPACUS_TOLERANCE = 0.01  # Opacus' absolute epsilon tolerance of its noise search (make_private_with_epsilon)


def accountant_from_history(history: Sequence[Sequence[float]], *, accountant: str = "rdp") -> IAccountant:
    """An Opacus accountant (``"rdp"`` or ``"prv"``) holding ``history``."""
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"unknown accountant {accountant!r}; valid choices: {', '.join(ACCOUNTANTS)}")
    acc = create_accountant(accountant)
    acc.history = [(float(sigma), float(q), int(steps)) for sigma, q, steps in history]
    return acc


def history_of(acc: IAccountant) -> History:
    """The accountant's history as JSON-ready triples."""
    return [(float(sigma), float(q), int(steps)) for sigma, q, steps in acc.history]


def epsilon_from_history(history: Sequence[Sequence[float]], *, delta: float, accountant: str = "rdp") -> float:
    """Cumulative epsilon at ``delta`` of every step in ``history`` (0.0 before any step; inf once
    a step ran without noise, which the RDP accountant says and the PRV one overflows on)."""
    if not history:
        return 0.0
    if any(float(sigma) == 0.0 and int(steps) > 0 and float(q) > 0.0 for sigma, q, steps in history):
        return math.inf
    return float(accountant_from_history(history, accountant=accountant).get_epsilon(delta=delta))


def noise_for_epsilon(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
    epsilon_tolerance: float | None = None,
) -> float:
    """Smallest noise multiplier whose ``steps`` subsampled Gaussian steps stay within ``target_epsilon``.

    Opacus' search stops within ``epsilon_tolerance`` under the target; by default 0.5 % of the
    target (Opacus' own default, :data:`OPACUS_TOLERANCE`, would be 2 % of a target of 0.5).
    """
    if steps < 1:
        raise ConfigError(f"the privacy plan needs at least one step, got steps={steps}")
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
            epsilon_tolerance=0.005 * target_epsilon if epsilon_tolerance is None else epsilon_tolerance,
        )
    )


def gaussian_epsilon(*, noise_multiplier: float, releases: int, delta: float) -> float:
    """Epsilon of ``releases`` Gaussian mechanisms (std = noise_multiplier x sensitivity), RDP-composed."""
    return epsilon_from_history([(noise_multiplier, 1.0, releases)] if releases else [], delta=delta)
