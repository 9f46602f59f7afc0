"""``torch.optim.SGD`` and ``torch.optim.Adam`` for models stacked along dim 0, one step count each.

Shadow models trained at once (``vmap``) have halves of different sizes, so each takes
``ceil(n_s / batch)`` steps per epoch, as the target does. A shared ``torch.optim`` object cannot
skip a model: momentum would still move its weights and Adam's bias correction would count a
step it never took. This optimizer applies PyTorch's update rules (default dampening, no
Nesterov, no AMSGrad) to the models marked active and leaves the others untouched.
"""

from __future__ import annotations

import torch

from attacks.membership.training import ModelTraining

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
ADAM_EPS = 1e-8


class StackedOptimizer:
    """One optimizer state per model of stacked parameters ``(S, ...)``; reads ``p.grad``."""

    def __init__(self, params: list[torch.Tensor], cfg: ModelTraining) -> None:
        self.params = params
        self.cfg = cfg
        self.steps = torch.zeros(params[0].shape[0], dtype=torch.float64)
        self.state = [(torch.zeros_like(p), torch.zeros_like(p) if cfg.optimizer == "adam" else None) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """Update the models where ``active`` (bool, shape (S,)) holds, as one torch step each."""
        cfg = self.cfg
        active_cpu = active.cpu()
        self.steps += active_cpu.double()
        for p, (first, second) in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            keep = active.view(-1, *([1] * (p.dim() - 1))).to(p.device)
            grad = p.grad + cfg.weight_decay * p if cfg.weight_decay else p.grad
            if cfg.optimizer == "adam":
                assert second is not None  # allocated in __init__ for adam (cfg is frozen)
                b1, b2 = ADAM_BETAS
                first.copy_(torch.where(keep, b1 * first + (1 - b1) * grad, first))
                second.copy_(torch.where(keep, b2 * second + (1 - b2) * grad * grad, second))
                t = self.steps.clamp_min(1)
                step_size = (cfg.lr / (1 - b1**t)).to(p.dtype).to(p.device)
                bias2_sqrt = (1 - b2**t).sqrt().to(p.dtype).to(p.device)
                shape = (-1, *([1] * (p.dim() - 1)))
                denom = second.sqrt() / bias2_sqrt.view(shape) + ADAM_EPS
                update = step_size.view(shape) * first / denom
            elif cfg.momentum:
                first.copy_(torch.where(keep, cfg.momentum * first + grad, first))
                update = cfg.lr * first
            else:
                update = cfg.lr * grad
            p.sub_(torch.where(keep, update, torch.zeros_like(update)))
