"""The task of the Flower app template: weights in and out, local training, evaluation.

Local training is FedAvg's ClientUpdate (McMahan et al., AISTATS 2017) with FedProx's
proximal term (Li et al., MLSys 2020) when ``proximal_mu > 0``. A defense may wrap the
model, optimizer and loader (``prepare_local_training``), e.g. with Opacus DP-SGD.

The proximal gradient ``mu (w - w_global)`` is added to the gradient by the base optimizer just
before its update (a step pre-hook), not through the loss: under DP-SGD Opacus replaces the
gradient by its clipped, noised per-sample sum, so a term in the loss would never reach the
update. Added after the noise it depends on no record, so it costs no privacy.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fl.federation.settings import TrainSettings
from fl.models import set_dropout_generator
from fl.models.dropout import has_dropout, record_masks, recorded_masks
from fl.seed import private_generator


@dataclass
class LocalTraining:
    """What a client trains with in one round; a defense may replace any part of it.

    ``fl`` does not import ``defenses``; the defenses import this class (``defenses.LocalTraining``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    epochs: int
    num_examples: int
    rounds: int = 1  # planned participations of this client in the run (<= num_rounds); dp-local
    # with target_epsilon spreads the budget over rounds x steps per participation
    local_steps: int = 0  # > 0: exactly this many optimizer steps per participation instead of epochs


@dataclass(frozen=True)
class LocalResult:
    """What one round of local training produced (the new weights stay in the model)."""

    num_examples: int
    loss: float
    steps: int
    indices: torch.Tensor  # dataset indices of the examples trained on, in order of first use
    metrics: Mapping[str, float | list[float] | list[int]]  # defense metrics (e.g. epsilon)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's persistent state (parameters and buffers) as detached CPU tensors."""
    module = getattr(model, "_module", model)  # Opacus GradSampleModule keeps the model in _module
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The client's optimizer; with ``proximal_mu > 0`` it adds FedProx's proximal gradient before each step."""
    if settings.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    if settings.proximal_mu > 0:
        add_proximal_gradient(optimizer, settings.proximal_mu)
    return optimizer


def add_proximal_gradient(optimizer: torch.optim.Optimizer, mu: float) -> None:
    """Before every step, add ``mu * (w - w0)`` to each gradient, ``w0`` the weights the optimizer started from."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    anchor = [p.detach().clone() for p in params]

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            for p, a in zip(params, anchor, strict=True):
                if p.grad is not None:
                    p.grad.add_(p - a, alpha=mu)

    optimizer.register_step_pre_hook(hook)


def make_loader(
    images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, *, batch_size: int, seed: int
) -> DataLoader:
    """Shuffled minibatches ``(x, y, dataset_index)`` drawn with a private generator."""
    size = batch_size or len(labels)
    return DataLoader(
        TensorDataset(images, labels, indices),
        batch_size=size,
        shuffle=True,
        generator=private_generator(seed, "loader"),
    )


def train_local(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    settings: TrainSettings,
    *,
    seed: int,
    defense: Any = None,
    client_state: MutableMapping[str, Any] | None = None,
    rounds: int = 1,
    masks: list[dict[str, torch.Tensor]] | None = None,
) -> LocalResult:
    """Train ``model`` in place on one client's data; ``defense`` follows ``defenses.base.Defense``.

    ``seed`` drives the minibatch order and the dropout masks (the client's private RNG);
    ``rounds`` is how many rounds the client is planned to take part in (the server tells it).
    ``masks``: a list to which each step's dropout masks are appended (the oracle's ground truth,
    kept on the client's side; a real server never has them).
    """
    state = client_state if client_state is not None else {}
    optimizer = make_optimizer(model, settings)
    loader = make_loader(images, labels, indices, batch_size=settings.batch_size, seed=seed)
    training = LocalTraining(model, optimizer, loader, settings.local_epochs, len(labels), rounds, settings.local_steps)
    if defense is not None:
        training = defense.prepare_local_training(training, client_state=state, seed=seed)
    set_dropout_generator(model, private_generator(seed, "dropout"))
    record = masks is not None and has_dropout(model)
    record_masks(model, record)
    device = next(model.parameters()).device
    loss_fn = nn.CrossEntropyLoss()
    training.model.train()
    total, steps, nonempty, seen = 0.0, 0, 0, []
    max_steps = settings.local_steps or None
    epochs = training.epochs if max_steps is None else max_steps  # each pass gives >= 1 step
    for _ in range(epochs):
        for batch in training.loader:
            x, y = batch[0].to(device), batch[1].to(device)
            # An empty Poisson batch (DP-SGD) is still a step, as in Opacus: its noise is added and
            # accounted, so whether a step happens does not depend on which records were sampled.
            training.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(training.model(x), y)
            loss.backward()
            training.optimizer.step()
            if record:
                assert masks is not None  # record implies masks
                masks.append({k: m.detach().cpu() for k, m in recorded_masks(model).items()})
            steps += 1
            if len(y):
                total += float(loss.detach())
                nonempty += 1
                seen.append(batch[2])
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    set_dropout_generator(model, None)
    record_masks(model, False)
    metrics = defense.finish_local_training(training, client_state=state) if defense is not None else {}
    order = _first_use_order(torch.cat(seen)) if seen else torch.empty(0, dtype=torch.long)
    return LocalResult(
        num_examples=training.num_examples,
        loss=total / max(nonempty, 1),
        steps=steps,
        indices=order,
        metrics=dict(metrics),
    )


def _first_use_order(seen: torch.Tensor) -> torch.Tensor:
    """Unique values of ``seen`` in order of first appearance."""
    uniq, inverse = torch.unique(seen, return_inverse=True)
    first = torch.full((len(uniq),), len(seen), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(seen)), reduce="amin")
    return uniq[first.argsort()]


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` (eval mode) on held-out data."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size].to(device)
        y = labels[start : start + batch_size].to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    n = max(len(labels), 1)
    return loss_sum / n, correct / n
