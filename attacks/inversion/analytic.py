"""Analytic input recovery from a leading fully connected layer with a bias.

For ``z = W x + b`` the gradients are ``dL/dW_i = (dL/dz_i) x`` and ``dL/db_i = dL/dz_i``, so
any row with a non-zero bias gradient gives the input exactly: ``x = (dL/dW_i) / (dL/db_i)``
(Phong et al., IEEE TIFS 2018; Geiping et al., NeurIPS 2020, Prop. 3.1). For a batch the row
gives a mixture of its inputs; we return the rows with the largest bias gradients.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attacks.inversion.base import ATTACKS, InversionResult
from attacks.inversion.labels import average_gradient
from attacks.inversion.observation import Observation
from attacks.inversion.victims import resolve_labels
from fl.errors import ConfigError


@dataclass(frozen=True)
class AnalyticConfig:
    """Analytic recovery has nothing to tune; a row counts when its bias gradient is non-zero."""

    min_bias_grad: float = 1e-12  # rows whose |bias gradient| is below this are skipped


def leading_linear(model: nn.Module) -> str:
    """Name of the first parametrized layer, which must be fully connected with a bias."""
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if isinstance(module, nn.Linear) and module.bias is not None:
            return name
        break
    raise ConfigError(
        "attack 'analytic' needs a model whose first layer is fully connected with a bias "
        "(e.g. --model mlp --model-option bias=true)"
    )


@ATTACKS.register("analytic")
class AnalyticRecovery:
    """Weight-gradient row divided by bias-gradient entry."""

    Config = AnalyticConfig
    name = "analytic"

    def run(
        self,
        observations: Sequence[Observation],
        config: AnalyticConfig,
        *,
        device: torch.device,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> list[InversionResult]:
        return [self._one(o, config) for o in observations]

    def _one(self, obs: Observation, cfg: AnalyticConfig) -> InversionResult:
        start = time.perf_counter()
        layer = leading_linear(obs.build_model())
        gw = average_gradient(obs, f"{layer}.weight")
        gb = average_gradient(obs, f"{layer}.bias")
        rows = torch.argsort(gb.abs(), descending=True)[: obs.num_examples]
        if float(gb.abs()[rows[-1]]) < cfg.min_bias_grad:
            raise ConfigError("attack 'analytic': the first layer's bias gradient is zero, nothing to divide by")
        x = (gw[rows] / gb[rows, None]).reshape(obs.num_examples, *obs.in_shape)
        labels, source = resolve_labels(obs)
        return InversionResult(
            attack=self.name,
            inputs=x.clamp(0, 1).float(),
            labels=labels,
            label_source=source,
            time_s=time.perf_counter() - start,
        )
