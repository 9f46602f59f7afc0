"""Per-record signals read off model outputs (pure tensor functions).

``scaled_logit`` is LiRA's ``phi(p) = log(p / (1 - p))`` on the true-class probability,
computed stably from logits as ``z_y - logsumexp_{k != y} z_k`` (Carlini et al., S&P 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def true_class_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the true label; ``logits`` (..., N, K), ``labels`` (N,) -> (..., N)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logp.gather(-1, labels.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1).exp()


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-record cross-entropy; (..., N, K) -> (..., N)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -logp.gather(-1, labels.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def scaled_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's logit-scaled confidence ``log p_y - log(1 - p_y)``; (..., N, K) -> (..., N)."""
    z = logits.double()
    onehot = F.one_hot(labels, z.shape[-1]).bool().expand(z.shape)
    z_y = z.masked_fill(~onehot, 0.0).sum(-1)
    z_rest = torch.logsumexp(z.masked_fill(onehot, float("-inf")), dim=-1)
    return z_y - z_rest


def query_views(images: torch.Tensor, flip: bool) -> list[torch.Tensor]:
    """The attacker's query augmentations: the record itself, and its mirror image if ``flip``."""
    return [images, images.flip(-1)] if flip else [images]


@torch.no_grad()
def query_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    flip: bool,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on every view of ``images``: (A, N, K) on the CPU."""
    was_training = model.training
    model.eval().to(device)
    out = []
    for view in query_views(images, flip):
        chunks = [model(view[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(view), batch_size)]
        out.append(torch.cat(chunks))
    model.train(was_training)
    return torch.stack(out)
