"""Defenses against leakage from federated updates; each composes with the federation.

``build_defense(DefenseConfig(name=...))`` returns a :class:`Defense` whose hooks the
federation calls (see :mod:`defenses.base`). A new defense is one module registering
itself in :data:`DEFENSES` plus one import line below.
"""

from defenses import dp_central, dp_local, dropout, ldp, none, prune, quantize, secagg  # noqa: F401  (registration)
from defenses.base import Defense, LocalTraining
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES, build_defense

__all__ = ["DEFENSES", "Defense", "DefenseConfig", "LocalTraining", "build_defense"]
