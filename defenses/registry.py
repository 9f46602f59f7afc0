"""The defense registry: a new defense is one module plus one decorator line."""

from __future__ import annotations

from collections.abc import Callable

from defenses.base import Defense
from defenses.config import DefenseConfig
from fl.core.registry import Registry

DefenseBuilder = Callable[[DefenseConfig], Defense]

DEFENSES: Registry[DefenseBuilder] = Registry("defense")


def build_defense(cfg: DefenseConfig) -> Defense:
    """Build the defense named ``cfg.name`` (unknown names raise ``ConfigError`` listing the choices)."""
    return DEFENSES.get(cfg.name)(cfg)
