"""The ConvNet of Inverting Gradients (Geiping et al., NeurIPS 2020).

Eight 3x3 convolutions (widths w, 2w, 2w, 4w, 4w, 4w, 4w, 4w) with normalisation and ReLU,
three 3x3 max-pools, and a linear classifier. ``norm="group"`` gives the DP-ready variant.
Dropout sits before the classifier (``placement="head"``) or after every block (``"all"``).
"""

from __future__ import annotations

import torch
from torch import nn

from fl.core.errors import ConfigError
from fl.models.common import norm2d
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS

PLACEMENTS = ("head", "all")


class ConvNet(nn.Module):
    def __init__(
        self, in_shape: tuple[int, int, int], num_classes: int, dropout: float, width: int, norm: str, placement: str
    ) -> None:
        super().__init__()
        if placement not in PLACEMENTS:
            raise ConfigError(f"unknown dropout placement {placement!r}; valid choices: {', '.join(PLACEMENTS)}")
        widths = [in_shape[0], width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width, 4 * width, 4 * width]
        pool_after = {3, 5, 7}
        layers: list[nn.Module] = []
        for i in range(8):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), norm2d(norm, widths[i + 1]), nn.ReLU()]
            if placement == "all":
                layers.append(MaskedDropout(dropout))
            if i in pool_after:
                layers.append(nn.MaxPool2d(3))
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features.eval()(torch.zeros(1, *in_shape)).shape[1]
        self.features.train()
        self.drop = MaskedDropout(dropout if placement == "head" else 0.0)
        self.fc = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x)))


@MODELS.register("convnet")
def build_convnet(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    width: int = 64,
    norm: str = "batch",
    placement: str = "head",
) -> nn.Module:
    """Inverting Gradients' ConvNet (``width=64`` as in the paper)."""
    return ConvNet(in_shape, num_classes, dropout, width, norm, placement)
