"""Registered cell kinds (one module each): inversion, membership, federated."""

from experiments.grid.kinds import federated, inversion, membership  # noqa: F401  (registration)
from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec

__all__ = ["CELL_KINDS", "CellKind", "CellSpec"]
