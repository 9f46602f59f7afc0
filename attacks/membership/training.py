"""Training the target and shadow models: plain mini-batch SGD, or DP-SGD through Opacus
(Abadi et al., CCS 2016; per-sample clipping to ``max_grad_norm``, Gaussian noise calibrated to
``epsilon`` at ``delta`` by the RDP accountant; Opacus' ghost clipping computes the clipping norms)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fl.core.errors import ConfigError

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


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings in Opacus' vocabulary."""

    epsilon: float = 8.0  # target epsilon over the whole training run
    delta: float = 1e-5
    max_grad_norm: float = 1.0  # per-sample gradient clipping bound

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"epsilon must be a finite number > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


def make_optimizer(params: list[torch.Tensor], cfg: ModelTraining) -> torch.optim.Optimizer:
    """SGD with momentum or Adam; both act element-wise, so stacked models train independently."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str) -> Iterator[None]:
    """Seed PyTorch's global generators (dropout masks, Opacus' noise) for one model's training,
    and give the caller back its own stream afterwards."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ModelTraining,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    dp: DPConfig | None = None,
) -> float | None:
    """Train ``model`` in place on ``images``/``labels``; returns the spent epsilon under DP, else None."""
    model.to(device).train()
    with seeded_global_rng(seed, device):
        if dp is not None:
            return _train_dp(model, images, labels, cfg, dp, seed=seed, device=device)
        gen = torch.Generator().manual_seed(seed)
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


def _train_dp(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: ModelTraining,
    dp: DPConfig,
    *,
    seed: int,
    device: torch.device | str,
) -> float:
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"model cannot be trained with DP-SGD ({errors[0]}); use norm=group or none")
    # batches from ``gen``; Opacus' noise from the global generator, which train_model has seeded
    gen = torch.Generator().manual_seed(seed)
    dataset = torch.utils.data.TensorDataset(images, labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    engine = PrivacyEngine(accountant="rdp")
    # ghost clipping (Li et al., ICLR 2022): per-sample gradient norms without materialising
    # per-sample gradients, so memory and time do not grow with the batch times the parameters
    module, opt, criterion, loader = engine.make_private_with_epsilon(
        module=model,
        optimizer=make_optimizer(list(model.parameters()), cfg),
        criterion=nn.CrossEntropyLoss(),
        data_loader=loader,
        target_epsilon=dp.epsilon,
        target_delta=dp.delta,
        epochs=cfg.epochs,
        max_grad_norm=dp.max_grad_norm,
        grad_sample_mode="ghost",
    )
    for _ in range(cfg.epochs):
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            opt.zero_grad(set_to_none=True)
            criterion(module(xb.to(device)), yb.to(device)).backward()
            opt.step()
    module.eval()
    eps = float(engine.get_epsilon(dp.delta))
    module.remove_hooks()  # ``model`` is a plain module again
    return eps


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
