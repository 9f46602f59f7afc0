"""The sigmoid LeNet of Deep Leakage from Gradients (Zhu et al., NeurIPS 2019).

Three 5x5 convolutions with sigmoid activations (strides 2, 2, 1, no pooling) and one linear
layer. Smooth activations make the gradient twice differentiable everywhere, which is what
DLG's L-BFGS needs. No normalisation, so it is DP-ready as is.
"""

from __future__ import annotations

import torch
from torch import nn

from fl.models.common import check_norm_free
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS


class LeNet(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, dropout: float, width: int) -> None:
        super().__init__()
        c = in_shape[0]
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, 5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, 5, padding=2, stride=1),
            nn.Sigmoid(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.body(torch.zeros(1, *in_shape)).shape[1]
        self.drop = MaskedDropout(dropout)
        self.fc = nn.Linear(flat, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.body(x)))


@MODELS.register("lenet")
def build_lenet(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    width: int = 12,
    norm: str = "none",
) -> nn.Module:
    """DLG's LeNet; dropout sits before the classifier. No normalisation layers (``norm`` none or group)."""
    check_norm_free("lenet", norm)
    return LeNet(in_shape, num_classes, dropout, width)
