"""Shadow-free black-box attacks on the target's output for the record itself.

* ``loss``: Yeom et al., "Privacy Risk in Machine Learning" (CSF 2018): members have low loss.
* ``confidence``: the softmax probability of the true label (Salem et al., NDSS 2019).
* ``entropy``: the modified entropy of Song and Mittal, "Systematic Evaluation of Privacy Risks
  of Machine Learning Models" (USENIX Security 2021),
  ``Mentr = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``, low for members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack, MembershipObservation
from attacks.membership.signals import ce_loss, true_class_prob


@MEMBERSHIP_ATTACKS.register("loss")
@dataclass(frozen=True)
class LossAttack(MembershipAttack):
    """Score = minus the cross-entropy loss of the target on the record."""

    def score(self, obs: MembershipObservation) -> np.ndarray:
        return (-ce_loss(obs.target_logits[0], obs.labels)).numpy()


@MEMBERSHIP_ATTACKS.register("confidence")
@dataclass(frozen=True)
class ConfidenceAttack(MembershipAttack):
    """Score = the target's probability of the true label."""

    def score(self, obs: MembershipObservation) -> np.ndarray:
        return true_class_prob(obs.target_logits[0], obs.labels).numpy()


def modified_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Song and Mittal's modified prediction entropy per record; (N, K) -> (N,)."""
    p = torch.softmax(logits.double(), dim=-1)
    tiny = torch.finfo(torch.float64).tiny
    onehot = torch.nn.functional.one_hot(labels, p.shape[-1]).bool()
    p_y = p[onehot]
    others = (p * torch.log((1 - p).clamp_min(tiny))).masked_fill(onehot, 0.0).sum(-1)
    return -(1 - p_y) * torch.log(p_y.clamp_min(tiny)) - others


@MEMBERSHIP_ATTACKS.register("entropy")
@dataclass(frozen=True)
class EntropyAttack(MembershipAttack):
    """Score = minus the modified entropy of the target's prediction."""

    def score(self, obs: MembershipObservation) -> np.ndarray:
        return (-modified_entropy(obs.target_logits[0], obs.labels)).numpy()
