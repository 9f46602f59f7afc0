"""Building blocks shared by the model zoo: normalisation choice and shape checks."""

from __future__ import annotations

from torch import nn

from fl.core.errors import ConfigError

NORMS = ("batch", "group", "none")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; valid choices: {', '.join(NORMS)}")
    return norm


def check_norm_free(model: str, norm: str) -> None:
    """Refuse ``norm="batch"`` for a model without normalisation layers rather than ignore it."""
    if check_norm(norm) == "batch":
        raise ConfigError(
            f"model {model} has no normalisation layers, so norm 'batch' does not apply; use none or group"
        )


def norm2d(norm: str, channels: int) -> nn.Module:
    """BatchNorm, GroupNorm (Opacus-compatible: no cross-sample statistics) or nothing."""
    check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(32, channels), channels)
    return nn.Identity()
