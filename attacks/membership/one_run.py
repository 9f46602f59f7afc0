"""The one-run privacy audit of Steinke, Nasr and Jagielski ("Privacy Auditing with One (1)
Training Run", NeurIPS 2023).

``m`` audit records are each included in the training set independently with probability 1/2
(``MIAConfig.split = "bernoulli"``). After training, the auditor guesses "in" for the ``k_pos``
records with the highest membership scores and "out" for the ``k_neg`` with the lowest, and
abstains on the rest; ``v`` of its ``r = k_pos + k_neg`` guesses are right. Under
(epsilon, delta)-DP the number of right guesses is dominated by a Binomial(r, e^eps / (1 +
e^eps)) up to a delta term (their Theorem 3.1 and Algorithm 2), which gives a p-value for each
epsilon; the audit reports the largest epsilon rejected at ``level``. Unlike the split-half
bound of :func:`attacks.membership.metrics.epsilon_lower_bound` it treats the records of one
training run as the unit the theorem is about, so it is valid without independent training runs,
provided the inclusions are independent coins and ``k_pos``, ``k_neg`` and the attack are fixed
before the scores are seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fl.core.errors import ConfigError


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least ``v`` of ``r`` guesses right] under (epsilon, delta)-DP, with ``m`` audit records
    (Steinke et al., Algorithm 2)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1 / (1 + math.exp(-epsilon))  # accuracy of epsilon-DP randomised response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    # below[i - 1] = P[v > Binomial(r, q) >= v - i], i = 1..v; alpha = max_i below / i
    below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    alpha = float((below / np.arange(1, v + 1)).max(initial=0.0))
    return min(1.0, beta + alpha * delta * 2 * m)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float, level: float = 0.95) -> float:
    """The largest epsilon whose p-value for ``v`` right guesses out of ``r`` is below ``1 - level``
    (bisection to 1e-6 relative; 0 when even epsilon = 0 is not rejected)."""
    alpha = 1 - level
    if p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < alpha:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-6 * hi:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p_value(m, r, v, mid, delta) < alpha else (lo, mid)
    return lo


@dataclass(frozen=True)
class OneRunAudit:
    """The guesses of one attack and the epsilon they prove (per record, at ``delta``)."""

    records: int  # m
    guesses: int  # r = k_pos + k_neg
    correct: int  # v
    epsilon: float

    def as_dict(self) -> dict[str, float]:
        return {
            "one_run_records": float(self.records),
            "one_run_guesses": float(self.guesses),
            "one_run_correct": float(self.correct),
            "eps_one_run": self.epsilon,
        }


def one_run_audit(
    scores: np.ndarray, members: np.ndarray, *, k_pos: int, k_neg: int, delta: float, level: float = 0.95
) -> OneRunAudit:
    """Guess "in" for the ``k_pos`` highest scores and "out" for the ``k_neg`` lowest; bound epsilon."""
    scores = np.asarray(scores, dtype=np.float64)
    members = np.asarray(members).astype(bool)
    m = scores.size
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg == 0 or k_pos + k_neg > m:
        raise ConfigError(f"one-run guesses k+ = {k_pos}, k- = {k_neg} must be >= 0, not both 0, at most {m} together")
    order = np.argsort(-scores, kind="mergesort")
    right = int(members[order[:k_pos]].sum()) + int((~members[order[m - k_neg :]]).sum())
    r = k_pos + k_neg
    return OneRunAudit(m, r, right, epsilon_lower_bound(m, r, right, delta=delta, level=level))
