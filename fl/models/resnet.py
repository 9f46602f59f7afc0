"""ResNet-18, CIFAR variant (He et al., CVPR 2016): 3x3 stem, no stem max-pool.

Four stages of two BasicBlocks (64, 128, 256, 512 channels), global average pooling,
dropout, linear classifier. ``norm="group"`` replaces BatchNorm for DP-SGD.
"""

from __future__ import annotations

import torch
from torch import nn

from fl.models.common import norm2d
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.n1 = norm2d(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.n2 = norm2d(norm, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), norm2d(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, dropout: float, width: int, norm: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_shape[0], width, 3, padding=1, bias=False), norm2d(norm, width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        c = width
        for i, mult in enumerate((1, 2, 4, 8)):
            out = width * mult
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(c, out, stride, norm), BasicBlock(out, out, 1, norm)]
            c = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = MaskedDropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.stages(self.stem(x)))))


@MODELS.register("resnet18")
def build_resnet18(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    width: int = 64,
    norm: str = "batch",
) -> nn.Module:
    """CIFAR ResNet-18 (11.2 M parameters at width 64); dropout before the classifier."""
    return ResNet18(in_shape, num_classes, dropout, width, norm)
