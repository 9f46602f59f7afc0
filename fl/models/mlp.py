"""Multi-layer perceptron of the DIA paper (Scheliga et al., AAAI 2023).

Input flattened, then ``depth`` hidden layers of ``hidden`` units, each Linear -> GELU ->
Dropout(p), then a linear classifier. The paper's MLP has no biases; ``bias=True`` adds them
(the analytic attack needs a bias on the first layer).
"""

from __future__ import annotations

import math

from torch import nn

from fl.models.common import check_norm_free
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS


@MODELS.register("mlp")
def build_mlp(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    hidden: int = 512,
    depth: int = 3,
    bias: bool = False,
    norm: str = "none",
) -> nn.Module:
    """3 x 512 GELU MLP with dropout after every hidden activation (no normalisation layers:
    ``norm`` may be none or group, both DP-ready)."""
    check_norm_free("mlp", norm)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden, bias=bias), nn.GELU(), MaskedDropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, num_classes, bias=bias))
    return nn.Sequential(*layers)
