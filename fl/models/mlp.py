"""Multi-layer perceptrons: the DIA paper's MLP and FedAvg's 2NN.

Input flattened, then ``depth`` hidden layers of ``hidden`` units, each Linear -> activation ->
Dropout(p), then a linear classifier.

- ``mlp``: the MLP of the DIA paper (Scheliga et al., AAAI 2023): 3 x 512 GELU, no biases
  (``bias=True`` adds them; the analytic attack needs a bias on the first layer). It is the
  inversion target of the paper; with PyTorch's default initialisation and no biases it trains
  slowly under FedAvg (docs/results.md, clean accuracy per model).
- ``2nn``: the architecture of FedAvg's MNIST 2NN (McMahan et al., AISTATS 2017: 2 x 200 ReLU
  with biases, 199,210 parameters on MNIST). The paper does not state its initialisation; fedleak
  uses He initialisation (He et al., ICCV 2015). It is the default model of ``fedleak simulate``
  because it trains in a few rounds.

``init``: ``torch`` keeps PyTorch's default Linear initialisation (the DIA paper's code uses it);
``he`` draws hidden weights from N(0, 2 / fan_in) (the classifier's from N(0, 1 / fan_in)) and
zeroes the biases, which keeps the activations' scale through the ReLU/GELU layers.
"""

from __future__ import annotations

import math

from torch import nn

from fl.core.errors import ConfigError
from fl.models.common import check_norm_free
from fl.models.dropout import MaskedDropout
from fl.models.registry import MODELS

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}
INITS = ("torch", "he")


@MODELS.register("mlp")
def build_mlp(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    hidden: int = 512,
    depth: int = 3,
    bias: bool = False,
    activation: str = "gelu",
    init: str = "torch",
    norm: str = "none",
) -> nn.Module:
    """``depth`` x ``hidden`` MLP with dropout after every hidden activation (no normalisation
    layers: ``norm`` may be none or group, both DP-ready)."""
    check_norm_free("mlp", norm)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
    if init not in INITS:
        raise ConfigError(f"unknown init {init!r}; valid choices: {', '.join(INITS)}")
    if hidden < 1 or depth < 0:
        raise ConfigError(f"an MLP needs hidden >= 1 and depth >= 0, got hidden={hidden}, depth={depth}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden, bias=bias), ACTIVATIONS[activation](), MaskedDropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, num_classes, bias=bias))
    if init == "he":
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        for layer in linears:
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu" if layer is not linears[-1] else "linear")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


@MODELS.register("2nn")
def build_2nn(
    *,
    in_shape: tuple[int, int, int],
    num_classes: int,
    dropout: float = 0.0,
    hidden: int = 200,
    depth: int = 2,
    norm: str = "none",
) -> nn.Module:
    """FedAvg's 2NN architecture: 2 x 200 ReLU with biases (He initialisation), dropout after every hidden
    activation."""
    return build_mlp(
        in_shape=in_shape,
        num_classes=num_classes,
        dropout=dropout,
        hidden=hidden,
        depth=depth,
        bias=True,
        activation="relu",
        init="he",
        norm=norm,
    )
