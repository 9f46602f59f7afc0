"""No defense: the baseline every defense's utility cost is measured against."""

from __future__ import annotations

from defenses.base import Defense
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES


class NoDefense(Defense):
    """Plain FedAvg; the server sees every client's exact update."""

    name = "none"


@DEFENSES.register("none")
def build_none(cfg: DefenseConfig) -> Defense:
    """The undefended baseline (``cfg`` has nothing it uses)."""
    return NoDefense()
