"""Training the target and shadow models: plain mini-batch SGD, or DP-SGD (Abadi et al., CCS 2016)
through :func:`defenses.dp_local.make_private`, the DP-SGD of the federation's clients: per-sample
clipping to ``max_grad_norm`` (norms by ghost clipping), Gaussian noise calibrated to the target
epsilon at ``delta`` by the accountant over the training run's Poisson-sampled steps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fl.core.errors import ConfigError
from fl.seed import private_generator, private_seed

if TYPE_CHECKING:
    from defenses.config import DefenseConfig

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class ModelTraining:
    """How every model of an audit is trained (target and shadows alike)."""

    epochs: int = 20  # passes over the model's training half
    batch_size: int = 64
    lr: float = 0.05  # SGD learning rate (Adam: 1e-3 is usual)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0
    optimizer: str = "sgd"  # sgd | adam

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")


def make_optimizer(params: list[torch.Tensor], cfg: ModelTraining) -> torch.optim.Optimizer:
    """SGD with momentum or Adam; both act element-wise, so stacked models train independently."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str) -> Iterator[None]:
    """Seed PyTorch's global generators (dropout masks) for one model's training from all of
    ``seed`` (``torch.manual_seed`` would keep 32 bits of it on the CPU), and give the caller back
    its own stream afterwards."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.set_state(private_generator(seed, "global").get_state())
        if devices:
            torch.cuda.manual_seed_all(private_seed(seed, "global"))  # Philox: a full 64-bit seed
        yield


def train_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ModelTraining,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    dp: DefenseConfig | None = None,
) -> list[tuple[float, float, int]] | None:
    """Train ``model`` in place on ``images``/``labels``; with ``dp`` (a dp-local defense: its noise
    multiplier, or the one planned for its target epsilon) by DP-SGD, returning the accountant's
    record ``[(sigma, sample rate, steps)]`` (its epsilon: :func:`defenses.accounting.epsilon_from_history`),
    else None."""
    model.to(device).train()
    with seeded_global_rng(seed, device):
        if dp is not None:
            return _train_dp(model, images, labels, cfg, dp, seed=seed, device=device)
        gen = private_generator(seed, "shuffle")
        x, y = images.to(device), labels.to(device)
        opt = make_optimizer(list(model.parameters()), cfg)
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen).to(device)
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    model.eval()
    return None


def dp_generators(seed: int, device: torch.device | str = "cpu") -> tuple[torch.Generator, torch.Generator]:
    """The DP-SGD noise (on the device the gradients live on) and the Poisson batches (the CPU
    loader's) of one training run: two independent streams, as the analysis assumes (one
    generator for both would tie the noise to the records sampled)."""
    return private_generator(seed, "dp-noise", device=device), private_generator(seed, "dp-batches")


def _train_dp(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ModelTraining,
    dp: DefenseConfig,
    *,
    seed: int,
    device: torch.device | str,
) -> list[tuple[float, float, int]]:
    from defenses.accounting import OPACUS_TOLERANCE
    from defenses.dp_local import make_private

    noise, batches = dp_generators(seed, device)
    dataset = torch.utils.data.TensorDataset(images, labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=batches)
    private = make_private(
        model,
        make_optimizer(list(model.parameters()), cfg),
        loader,
        noise_multiplier=None if dp.target_epsilon is not None else dp.sigma,
        target_epsilon=dp.target_epsilon,
        delta=dp.delta,
        max_grad_norm=dp.max_grad_norm,
        epochs=cfg.epochs,
        accountant=dp.accountant,
        criterion=nn.CrossEntropyLoss(),
        noise_generator=noise,
        epsilon_tolerance=OPACUS_TOLERANCE,  # the search the audits' targets were planned with
    )
    assert private.criterion is not None  # ghost clipping: the criterion runs both backward passes
    for _ in range(cfg.epochs):
        for xb, yb in private.loader:  # an empty Poisson batch is still a (noise-only, accounted) step
            private.optimizer.zero_grad(set_to_none=True)
            private.criterion(private.model(xb.to(device)), yb.to(device)).backward()
            private.optimizer.step()
    private.model.eval()
    private.model.cleanup()  # ``model`` is a plain module again
    return [(float(sigma), float(rate), int(steps)) for sigma, rate, steps in private.engine.accountant.history]


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
) -> float:
    """Top-1 accuracy in eval mode."""
    model.eval().to(device)
    correct = sum(
        int((model(images[i : i + 1024].to(device)).argmax(-1).cpu() == labels[i : i + 1024]).sum())
        for i in range(0, len(images), 1024)
    )
    return correct / max(len(images), 1)
