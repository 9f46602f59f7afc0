"""What a curious server observes for one client in one round, and the client it observes.

An :class:`Observation` is plain data: the architecture, the weights the server sent, the
update the client sent back and the local training settings the server chose (learning
rate, local steps, batch size), plus what the attacker is assumed to know (labels, and the
client's true dropout masks only for the oracle upper bound of Scheliga et al., AAAI 2023).

:func:`observe_client` plays the honest client: it trains in train mode with dropout masks
drawn from its own :class:`torch.Generator` (the server never sees them) and runs
``local_steps`` plain SGD steps over its data in order, batch after batch, cycling when the
data run out. A one-step ``gradient`` observation is the FedSGD case; a ``delta``
(``w_after - w_before``) is the FedAvg case that Inverting Gradients (Geiping et al.,
NeurIPS 2020) inverts by unrolling the local steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn import functional as F

from fl.core.errors import ConfigError
from fl.models import (
    build_model,
    dropout_sites,
    record_masks,
    recorded_masks,
    set_dropout_generator,
)

UpdateKind = Literal["gradient", "delta"]
UPDATE_KINDS = ("gradient", "delta")


@dataclass(frozen=True)
class Observation:
    """One client's update as the server saw it (tensors on any device; the attack moves them).

    ``update`` is keyed like ``named_parameters``: the mean-loss gradient over the client's
    batch when ``kind == "gradient"`` (then ``local_steps == 1``), or ``w_after - w_before``
    after ``local_steps`` SGD steps of ``batch_size`` examples at learning rate ``lr`` when
    ``kind == "delta"``. ``num_examples`` is the number of distinct examples behind it.
    """

    model_name: str
    model_options: dict[str, Any]
    in_shape: tuple[int, int, int]
    num_classes: int
    dropout: float
    weights_before: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    kind: UpdateKind = "gradient"
    lr: float = 0.1  # client SGD learning rate (only used for deltas)
    local_steps: int = 1  # SGD steps the client ran
    batch_size: int = 1  # examples per local step
    num_examples: int = 1  # distinct examples behind the update
    labels: torch.Tensor | None = None  # true labels, when the attacker is assumed to know them
    buffer_update: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """``buffers_after - buffers_before`` as the server received them (BatchNorm running means and
    variances, batch counts), keyed like the state dict; None where the model has no buffers or the
    update did not carry them. :mod:`attacks.inversion.batchnorm` reads the client's batch
    statistics from it."""
    true_masks: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """Client's dropout masks keyed ``<site>.mask``, shape (local_steps, batch_size, *site);
    only the oracle attack may read them (a real server never has them)."""

    def __post_init__(self) -> None:
        if self.kind not in UPDATE_KINDS:
            raise ConfigError(f"unknown update kind {self.kind!r}; valid choices: {', '.join(UPDATE_KINDS)}")
        if self.local_steps < 1 or self.batch_size < 1 or self.num_examples < 1:
            raise ConfigError(
                f"local_steps, batch_size and num_examples must be >= 1, got "
                f"{self.local_steps}, {self.batch_size}, {self.num_examples}"
            )
        if self.kind == "gradient" and self.local_steps != 1:
            raise ConfigError("a gradient observation has local_steps == 1; use kind='delta' for several steps")
        if self.kind == "gradient" and self.batch_size != self.num_examples:
            raise ConfigError(
                f"a gradient observation covers its whole batch: batch_size {self.batch_size} != "
                f"num_examples {self.num_examples}"
            )
        if self.batch_size > self.num_examples:
            raise ConfigError(f"batch_size {self.batch_size} exceeds num_examples {self.num_examples}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.labels is not None and self.labels.numel() != self.num_examples:
            raise ConfigError(f"{self.labels.numel()} known labels for {self.num_examples} examples")

    def build_model(self) -> nn.Module:
        """The observed architecture with ``weights_before`` loaded (on the CPU)."""
        model = build_model(
            self.model_name,
            in_shape=self.in_shape,
            num_classes=self.num_classes,
            dropout=self.dropout,
            **self.model_options,
        )
        model.load_state_dict({k: v.detach().cpu() for k, v in self.weights_before.items()})
        return model

    def step_indices(self) -> list[list[int]]:
        """Which examples each local step used (in order, cycling), as the client trains."""
        n, b = self.num_examples, self.batch_size
        return [[(s * b + j) % n for j in range(b)] for s in range(self.local_steps)]

    def with_labels(self, labels: torch.Tensor | None) -> Observation:
        """A copy that hands the attacker ``labels`` (or takes them away with ``None``)."""
        return replace(self, labels=labels)


def observe_client(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    model_name: str,
    model_options: dict[str, Any] | None = None,
    kind: UpdateKind = "gradient",
    lr: float = 0.1,
    local_steps: int = 1,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    known_labels: bool = False,
) -> Observation:
    """Run the honest client on ``images``/``labels`` and return what the server observes.

    The client trains ``model`` (left unchanged) in train mode, drawing dropout masks with its
    private ``generator``; the masks are recorded into ``true_masks`` for the oracle only.
    """
    n = images.shape[0]
    batch_size = n if batch_size is None else batch_size
    if kind == "gradient" and local_steps != 1:
        raise ConfigError("a gradient observation has one local step; use kind='delta' for several")
    weights_before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    client = copy.deepcopy(model)
    client.train()
    set_dropout_generator(client, generator)
    record_masks(client)
    params: dict[str, torch.Tensor] = dict(client.named_parameters())
    obs_shell = Observation(
        model_name=model_name,
        model_options=dict(model_options or {}),
        in_shape=cast(tuple[int, int, int], tuple(images.shape[1:])),
        num_classes=_num_classes(client, images),
        dropout=_dropout_rate(client),
        weights_before={},
        update={},
        kind=kind,
        lr=lr,
        local_steps=local_steps,
        batch_size=batch_size,
        num_examples=n,
    )
    masks: list[dict[str, torch.Tensor]] = []
    grads: dict[str, torch.Tensor] = {}
    for idx in obs_shell.step_indices():
        loss = F.cross_entropy(client(images[idx]), labels[idx])
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        if any(True for _ in dropout_sites(client)):
            masks.append(recorded_masks(client))
        with torch.no_grad():
            for name, p in params.items():
                p -= lr * grads[name]
    if kind == "gradient":
        update = {k: g.detach() for k, g in grads.items()}
    else:
        update = {k: (p.detach() - weights_before[k]) for k, p in params.items()}
    true_masks = {k: torch.stack([m[k] for m in masks]) for k in masks[0]} if masks else None
    buffers = {
        k: (b.detach() - weights_before[k])
        for k, b in client.named_buffers()
        if k in weights_before and not k.endswith(".mask")
    }
    return replace(
        obs_shell,
        weights_before=weights_before,
        update=update,
        buffer_update=buffers or None,
        labels=labels.clone() if known_labels else None,
        true_masks=true_masks,
    )


def _dropout_rate(model: nn.Module) -> float:
    rates = {m.p for _, m in dropout_sites(model)}
    if len(rates) > 1:
        raise ConfigError(f"the model mixes dropout rates {sorted(rates)}; observations assume one rate")
    return rates.pop() if rates else 0.0


def _num_classes(model: nn.Module, images: torch.Tensor) -> int:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(images[:1])
    model.train(was)
    return int(out.shape[-1])
