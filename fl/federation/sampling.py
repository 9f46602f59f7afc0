"""Which clients take part in which round: pure functions of the seed, so a resumed run samples the same."""

from __future__ import annotations

import numpy as np

from fl.seed import derive_seed


def sample_clients(seed: int, server_round: int, num_clients: int, k: int) -> list[int]:
    """The ``k`` clients of ``server_round``, a pure function of the seed (so resume samples the same)."""
    rng = np.random.default_rng(derive_seed(seed, "sample", server_round))
    return sorted(int(c) for c in rng.choice(num_clients, size=k, replace=False))


def planned_rounds(seed: int, num_rounds: int, num_clients: int, k: int) -> dict[int, int]:
    """How many rounds each client is sampled for: its planned participations in the run.

    Sampling is a pure function of the seed (never of the data), so the server can tell each
    client in advance; dp-local with a target epsilon spreads the budget over exactly these.
    """
    counts = dict.fromkeys(range(num_clients), 0)
    for server_round in range(1, num_rounds + 1):
        for client in sample_clients(seed, server_round, num_clients, k):
            counts[client] += 1
    return counts


def attacked_clients(seed: int, server_round: int, sampled: list[int], k: int) -> list[int]:
    """The ``k`` sampled clients whose updates the curious server attacks this round."""
    rng = np.random.default_rng(derive_seed(seed, "attacked", server_round))
    return sorted(int(c) for c in rng.choice(sampled, size=k, replace=False)) if k else []
