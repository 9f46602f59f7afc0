"""The client's batch statistics, read off the BatchNorm running statistics in its update.

A BatchNorm layer in train mode updates ``running = (1 - m) running + m batch`` once per forward
pass (``m`` its momentum; the variance with Bessel's correction). A client that sends its whole
state dict, as FedAvg clients do, hands the server ``running_after - running_before``; after one
local step that is ``m (batch - running_before)``, so the server reads the batch mean and variance
of every BatchNorm input exactly. That is the prior GradInversion (Yin et al., CVPR 2021) builds
from the global running statistics, here for the client's own batch. After several steps the
update is the momentum-weighted sum of the steps' statistics, which a replay can match but not
split; :func:`client_batch_statistics` reads one-step updates only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError


@dataclass(frozen=True)
class BatchStatistics:
    """One BatchNorm layer's input statistics over the client's batch (per channel)."""

    mean: Tensor
    var: Tensor  # unbiased, as BatchNorm's running variance uses


def client_batch_statistics(obs: Observation) -> dict[str, BatchStatistics]:
    """Per BatchNorm layer (by module name), the batch mean and unbiased variance of its input
    in the client's one local step. Raises :class:`ConfigError` in one line when the update holds
    no BatchNorm statistics, ran more than one step, or a layer averages cumulatively."""
    if obs.local_steps != 1:
        raise ConfigError(
            f"the BatchNorm statistics of {obs.local_steps} local steps are one momentum-weighted sum; "
            "one batch's statistics are read from one-step updates only (--local-steps 1)"
        )
    model = obs.build_model()
    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if not layers or not obs.buffer_update:
        raise ConfigError(f"the update of {obs.model_name!r} carries no BatchNorm running statistics")
    out = {}
    for name, layer in layers.items():
        if layer.momentum is None:
            raise ConfigError(f"BatchNorm {name!r} averages cumulatively (momentum None); not supported")
        try:
            d_mean = obs.buffer_update[f"{name}.running_mean"].double()
            d_var = obs.buffer_update[f"{name}.running_var"].double()
        except KeyError:
            raise ConfigError(f"the update holds no running statistics of BatchNorm {name!r}") from None
        m = float(layer.momentum)
        before_mean = obs.weights_before[f"{name}.running_mean"].double().cpu()
        before_var = obs.weights_before[f"{name}.running_var"].double().cpu()
        out[name] = BatchStatistics(mean=before_mean + d_mean.cpu() / m, var=before_var + d_var.cpu() / m)
    return out


def batch_input_statistics(model: nn.Module, x: Tensor) -> dict[str, BatchStatistics]:
    """The batch mean and unbiased variance of every BatchNorm layer's input for inputs ``x``
    (train mode, no running statistics touched): what :func:`client_batch_statistics` recovers."""
    stats: dict[str, BatchStatistics] = {}
    hooks = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):

            def hook(mod: nn.Module, inp: tuple[Tensor, ...], name: str = name) -> None:
                dims = [0, *range(2, inp[0].dim())]
                stats[name] = BatchStatistics(mean=inp[0].double().mean(dims), var=inp[0].double().var(dims))

            hooks.append(layer.register_forward_pre_hook(hook))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was = model.training
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.load_state_dict(state)
        model.train(was)
    return stats
