"""One round of central DP as its accountant saw it, and the pieces every central-DP wrapper shares.

:class:`CentralRelease` records what a wrapper's ``aggregate_train`` released and assumed;
:func:`incomplete_round` is the rule that only complete rounds are released (Flower's
``validate_replies(..., strict=True)``); :func:`round_noise_rng` is the server's own noise
generator of a round, a function of (federation seed, round) only, never NumPy's global one
(clients and other threads in the same process draw from and reseed that one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from fl.seed import derive_seed

COMPLETE_ROUNDS_ONLY = "accounted central DP releases only complete rounds"
NO_AGGREGATE = "the inner strategy returned no aggregate"


@dataclass(frozen=True)
class CentralRelease:
    """What the accountant assumed for one round's ``aggregate_train``."""

    round: int
    released: bool  # a noised aggregate was returned and composed into the accountant
    noise_multiplier: float  # the accounted z (adaptive clipping adds z_D >= z to the average)
    clipping_norm: float  # the bound this round's updates were clipped to
    clients: int  # updates averaged; when skipped, the replies received without error
    sampled: int  # clients sampled for the round (num_sampled_clients)
    noise_std: float  # std of the Gaussian noise added to each entry of the average; 0 when skipped
    reason: str = ""  # why nothing was released ("" when released)
    # the update's noise multiplier: z for fixed clipping, z_D for adaptive (noise_std = it x C / clients)
    update_noise_multiplier: float = 0.0
    count_stddev: float = 0.0  # adaptive clipping's sigma_b on the unclipped count (0 for fixed clipping)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def incomplete_round(replies: list[Message], sampled: int) -> str:
    """Why a round cannot be released (a failed or missing reply), or "" when it is complete.

    The same rule as Flower's ``validate_replies(..., strict=True)`` for accounted fixed clipping.
    """
    failed = sum(reply.has_error() for reply in replies)
    if failed:
        return f"{failed} of {sampled} sampled clients failed; {COMPLETE_ROUNDS_ONLY}"
    if len(replies) != sampled:
        return f"{len(replies)} of {sampled} sampled clients replied; {COMPLETE_ROUNDS_ONLY}"
    return ""


def round_noise_rng(seed: int, server_round: int) -> np.random.RandomState:
    """The server's noise generator for ``server_round``, a function of (seed, round) only.

    A ``RandomState``, so that its draws equal Flower's after ``np.random.seed`` of the same seed.
    """
    return np.random.RandomState(derive_seed(seed, "server-noise", server_round))


def add_gaussian_noise(aggregated: ArrayRecord, std: float, rng: np.random.RandomState) -> ArrayRecord:
    """``aggregated`` plus N(0, std^2) drawn from ``rng``, array by array in key order."""
    noised = {}
    for key, array in zip(aggregated.keys(), aggregated.to_numpy_ndarrays(), strict=True):
        noised[key] = Array(array + rng.normal(0, std, array.shape).astype(array.dtype))
    return ArrayRecord(noised)
