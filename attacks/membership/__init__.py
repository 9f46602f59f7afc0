"""Membership inference: black-box attacks on a trained model (LOSS, confidence, entropy, LiRA,
RMIA), server-side attacks on a federated client's update, and rigorous evaluation. The audits
that train targets and write run folders are in ``experiments.membership``.

A new black-box attack is one module registering a :class:`MembershipAttack` in :data:`MEMBERSHIP_ATTACKS`
plus one import line below.
"""

from attacks.membership import blackbox, lira, rmia  # noqa: F401  (registration)
from attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack, MembershipObservation, build_attack

__all__ = ["MEMBERSHIP_ATTACKS", "MembershipAttack", "MembershipObservation", "build_attack"]
