"""Robust Membership Inference Attack (RMIA) of Zarifzadeh et al., "Low-Cost High-Power
Membership Inference Attacks" (ICML 2024).

The likelihood ratio of record ``x`` against population record ``z`` is
``LR(x, z) = (p(x|theta) / p(x)) / (p(z|theta) / p(z))`` where ``p(.|theta)`` is the target's
true-class probability (averaged over query augmentations) and ``p(.)`` its average over
reference models. The score is the fraction of population records with ``LR(x, z) > gamma``.
Online, ``p(x)`` averages all reference models; offline (OUT models only) it is corrected as
``p(x) = ((1 + a) p_OUT(x) + (1 - a)) / 2`` (the paper's linear approximation of the missing IN
models). Works with a single reference model.

Offline, ``a`` is calibrated on the reference models, as the paper proposes: one reference model
plays the target, the others are its references, and the ``a`` of the grid 0, 0.1, ..., 1 with
the highest AUC (on the tie-broken scores) on that model's known members is kept
(:meth:`RMIA.fitted` reports it). ML Privacy Meter's ``tune_offline_a`` differs: it attacks a
paired model with a single reference model, leaving out both the target and the pair; fedleak
uses all S - 1 other references, the ones the real attack then uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack, MembershipObservation
from attacks.membership.metrics import auc, roc_curve
from attacks.membership.signals import true_class_prob
from fl.core.errors import ConfigError


def _prob(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """True-class probability averaged over the query axis (the one before N); (..., A, N, K) -> (..., N)."""
    return true_class_prob(logits, labels).mean(-2).numpy()


def rmia_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """Fraction of ``ratio_z`` with ``ratio_x / ratio_z > gamma``, for every entry of ``ratio_x``,
    ties broken by ``ratio_x`` itself.

    The fraction takes at most Z + 1 values, so many records tie (groups of dozens at Z = 1000),
    which blunts the TPR at low FPR. Records with equal counts are ordered by their own ratio, by
    adding less than ``1 / Z``: a score stays within ``[count / Z, (count + 1) / Z)``, and since the
    count grows with the ratio, the order is the ratio's.
    """
    z = np.sort(ratio_z)
    counts = np.searchsorted(z, ratio_x / gamma, side="left")
    rank = stats.rankdata(ratio_x)  # 1 .. N, equal ratios sharing their average rank
    return (counts + rank / (ratio_x.size + 1)) / z.size


A_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # ML Privacy Meter's grid for a


@MEMBERSHIP_ATTACKS.register("rmia")
@dataclass(frozen=True)
class RMIA(MembershipAttack):
    """RMIA; ``offline=False`` averages IN and OUT reference models, ``True`` uses OUT models only."""

    gamma: float = 1.0  # threshold on the pairwise likelihood ratio (the paper's gamma)
    offline: bool = False
    a: float | None = None  # offline scaling of p_OUT(x) towards p(x); None: calibrated

    needs_shadows = True
    needs_population = True
    min_shadows = 1

    def __post_init__(self) -> None:
        if self.gamma <= 0:
            raise ConfigError(f"rmia gamma must be > 0, got {self.gamma}")
        if self.a is not None and not 0.0 <= self.a <= 1.0:
            raise ConfigError(f"rmia offline scaling a must be in [0, 1], got {self.a}")

    def shadows_needed(self) -> int:
        """Offline calibration attacks one shadow with at least 2 others as its references."""
        return 3 if self.offline and self.a is None else super().shadows_needed()

    def fitted(self, obs: MembershipObservation) -> dict[str, float]:
        return {"a": self._a(obs)} if self.offline else {}

    def score(self, obs: MembershipObservation) -> np.ndarray:
        assert obs.shadow_logits is not None and obs.shadow_in is not None
        assert obs.population_labels is not None and obs.shadow_population_logits is not None
        assert obs.target_population_logits is not None
        a = self._a(obs) if self.offline else 0.0
        return self._scores(
            _prob(obs.target_logits, obs.labels),
            _prob(obs.target_population_logits, obs.population_labels),
            _prob(obs.shadow_logits, obs.labels),
            _prob(obs.shadow_population_logits, obs.population_labels),
            obs.shadow_in.numpy().astype(bool),
            a,
        )

    def _a(self, obs: MembershipObservation) -> float:
        """The fixed ``a``, or the grid value that best attacks shadow 0 with shadows 1.. as references."""
        if self.a is not None:
            return self.a
        assert obs.shadow_logits is not None and obs.shadow_in is not None
        assert obs.population_labels is not None and obs.shadow_population_logits is not None
        ref = _prob(obs.shadow_logits, obs.labels)
        ref_z = _prob(obs.shadow_population_logits, obs.population_labels)
        inside = obs.shadow_in.numpy().astype(bool)
        covered = (~inside[1:]).any(0)  # records with an OUT model among the references
        members = inside[0, covered]
        if members.all() or not members.any():
            raise ConfigError("offline rmia cannot calibrate a: shadow 0 has no members or no non-members to test")
        aucs = [
            auc(*roc_curve(
                self._scores(ref[0, covered], ref_z[0], ref[1:, covered], ref_z[1:], inside[1:, covered], a),
                members,
            )[:2])
            for a in A_GRID
        ]  # fmt: skip
        return A_GRID[int(np.argmax(aucs))]

    def _scores(
        self,
        p_x: np.ndarray,
        p_z: np.ndarray,
        ref_x: np.ndarray,
        ref_z: np.ndarray,
        inside: np.ndarray,
        a: float,
    ) -> np.ndarray:
        """Scores of a model with true-class probabilities ``p_x`` (N,) and ``p_z`` (Z,) against
        references ``ref_x`` (S, N), ``ref_z`` (S, Z) whose IN sets are ``inside`` (S, N)."""
        tiny = np.finfo(np.float64).tiny
        ratio_x = p_x / np.maximum(self._prior(ref_x, inside, a), tiny)
        ratio_z = p_z / np.maximum(self._prior(ref_z, None, a), tiny)
        return rmia_scores(ratio_x, ratio_z, self.gamma)

    def _prior(self, ref: np.ndarray, inside: np.ndarray | None, a: float) -> np.ndarray:
        """``p(.)`` from reference probabilities ``ref`` (S, M); ``inside`` (S, M) or None (all OUT)."""
        if not self.offline:
            return ref.mean(0)
        out = np.ones_like(ref, dtype=bool) if inside is None else ~inside
        if not out.any(0).all():
            raise ConfigError("offline rmia needs an OUT reference model for every record; use >= 2 shadows")
        p_out = (ref * out).sum(0) / out.sum(0)
        return 0.5 * ((1 + a) * p_out + (1 - a))


@MEMBERSHIP_ATTACKS.register("rmia-offline")
@dataclass(frozen=True)
class RMIAOffline(RMIA):
    """Offline RMIA: reference models that did not train on the record, scaled by ``a``
    (calibrated on a shadow model unless given)."""

    offline: bool = True
    min_shadows = 2
