"""Dropout as a defense: the client's private masks hide the input from gradient inversion.

Dropout (Srivastava et al., JMLR 2014) was proposed as a defense against gradient inversion
by Zheng (2021, "Dropout against deep leakage from gradients"); the Dropout Inversion Attack
(Scheliga et al., AAAI 2023) breaks it by optimizing the unknown masks with the image. The
defense only fixes the model's dropout rate (and placement where the model has that option);
each client draws its masks from its own generator, which the server never sees.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from defenses.base import Defense
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from fl.core.errors import ConfigError
from fl.models import has_dropout


class DropoutDefense(Defense):
    """Force dropout rate ``p`` (and optionally its ``placement``) on the federated model."""

    name = "dropout"

    def __init__(self, *, p: float, placement: str | None = None) -> None:
        if not 0.0 < p < 1.0:
            raise ConfigError(f"defense option dropout={p!r} is invalid; expected a value in (0, 1)")
        self.p = p
        self.placement = placement

    def model_overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {"dropout": self.p}
        if self.placement is not None:
            overrides["placement"] = self.placement
        return overrides

    def check_model(self, model: nn.Module) -> None:
        if not has_dropout(model):
            raise ConfigError(
                f"the dropout defense needs a model with dropout layers, but {type(model).__name__} has none with p > 0"
            )


@DEFENSES.register("dropout")
def build_dropout(cfg: DefenseConfig) -> Defense:
    """Dropout with rate ``cfg.dropout`` at ``cfg.dropout_placement``."""
    return DropoutDefense(p=cfg.dropout, placement=cfg.dropout_placement)
