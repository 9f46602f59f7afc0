"""The model registry and the one function every layer uses to build a model."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.models.common import check_norm

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(
    name: str,
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    norm: str | None = None,
    **options: object,
) -> nn.Module:
    """Build model ``name`` for ``in_shape`` = (C, H, W) inputs and ``num_classes`` outputs.

    ``norm`` picks ``batch``, ``group`` (the DP-ready variant) or ``none`` where the model has
    normalisation layers; ``options`` are the model's own keyword arguments (e.g. ``width``).
    """
    builder = MODELS.get(name)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    kwargs: dict[str, object] = dict(options)
    if norm is not None:
        kwargs["norm"] = check_norm(norm)
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        valid = [p for p in params if p not in ("in_shape", "num_classes", "dropout")]
        raise ConfigError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid)}"
        )
    return builder(in_shape=tuple(in_shape), num_classes=num_classes, dropout=dropout, **kwargs)


def model_options(name: str) -> dict[str, object]:
    """The model's own options with their defaults (for ``fedleak models``)."""
    params = inspect.signature(MODELS.get(name)).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in ("in_shape", "num_classes", "dropout") and p.default is not inspect.Parameter.empty
    }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
