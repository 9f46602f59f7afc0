"""Server-side membership inference against one federated client's update.

A curious server holds the global weights ``w`` it sent and the update ``delta`` the client
returned. Local SGD moves the weights against the gradients of the client's records, so a
record's gradient at ``w`` aligns with ``-delta`` when the client trained on it. Following the
gradient-based attacks of Nasr et al. (S&P 2019) and FedMIA (Zhu et al., 2024), each candidate
record ``x`` is scored by

* ``grad-cosine``: ``cos(g_x(w), -delta)``;
* ``grad-diff``: how much removing x's share of the update shrinks it,
  ``||delta||^2 - ||delta + c g_x(w)||^2`` with ``c = lr / batch_size`` (one SGD step's weight);
* ``grad-norm``: ``-||g_x(w + delta)||``: the client's own records have small gradients on the
  model it returned.

Per-sample gradients come from ``torch.func.vmap(grad(...))`` over chunks of records; only the
reductions above are kept, so memory stays at one chunk of gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from fl.core.errors import ConfigError
from fl.core.registry import Registry


def per_sample_stats(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    directions: Sequence[Mapping[str, torch.Tensor]] = (),
    *,
    chunk: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-record gradient norms and inner products with each of ``directions`` at ``params``
    (eval mode, so no dropout mask is guessed).

    ``params`` is a state dict: its buffers (BatchNorm running statistics, part of what the server
    received) replace the model's own; a buffer it lacks keeps the model's.

    Returns ``(norms, dots)``: (N,) and (N, D) float64 on the CPU.
    """
    from torch.func import functional_call, grad, vmap

    model = model.to(device).eval()
    names = [n for n, _ in model.named_parameters()]
    p = {n: params[n].to(device).float() for n in names}
    buffers = {
        n: params[n].to(device=device, dtype=b.dtype) if n in params else b.to(device) for n, b in model.named_buffers()
    }
    dirs = [torch.cat([d[n].to(device).double().flatten() for n in names]) for d in directions]
    mat = torch.stack(dirs, 1) if dirs else torch.zeros(0, 0, dtype=torch.float64, device=device)

    def loss(p_: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p_, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    norms, dots = [], []
    for i in range(0, len(images), chunk):
        g = per_sample(p, images[i : i + chunk].to(device), labels[i : i + chunk].to(device))
        flat = torch.cat([g[n].flatten(1).double() for n in names], 1)
        norms.append(flat.norm(dim=1).cpu())
        dots.append((flat @ mat).cpu() if dirs else torch.zeros(len(flat), 0, dtype=torch.float64))
    return torch.cat(norms), torch.cat(dots)


@dataclass(frozen=True)
class GradientStats:
    """What the server computes per candidate record from the global weights and one update."""

    dots: torch.Tensor  # (N,) <g_x(w), -delta>
    norms: torch.Tensor  # (N,) ||g_x(w)||
    norms_after: torch.Tensor  # (N,) ||g_x(w + delta)||
    update_norm: float  # ||delta||
    step_weight: float  # c = client lr / batch size
    ref_cos: torch.Tensor  # (N, R) cos(g_x(w), -delta_r) for R other clients' updates of the round


FederatedScore = Callable[[GradientStats], np.ndarray]
FEDERATED_ATTACKS: Registry[FederatedScore] = Registry("federated membership attack")


@FEDERATED_ATTACKS.register("grad-cosine")
def grad_cosine(s: GradientStats) -> np.ndarray:
    """Cosine between the record's gradient and the negated update."""
    return (s.dots / (s.norms * s.update_norm).clamp_min(1e-30)).numpy()


@FEDERATED_ATTACKS.register("grad-diff")
def grad_diff(s: GradientStats) -> np.ndarray:
    """``||delta||^2 - ||delta + c g||^2 = 2 c <g, -delta> - c^2 ||g||^2``."""
    return (2 * s.step_weight * s.dots - s.step_weight**2 * s.norms.pow(2)).numpy()


@FEDERATED_ATTACKS.register("fedmia")
def fedmia(s: GradientStats) -> np.ndarray:
    """FedMIA (Zhu et al.) for one round: the one-sided Gaussian probability that the record's cosine
    with this client's update exceeds its cosines with the other clients' updates of the round,
    which mostly did not train on it (per-record mean and population variance + 1e-8 over those
    C - 1 references, as in the authors' code). One reference: the plain difference (the authors'
    variance would be 1e-8 there, saturating every score into ties). The audit averages it over every
    captured round of the client (:func:`fedmia_rounds`)."""
    if s.ref_cos.shape[1] == 0:
        raise ConfigError("fedmia needs the updates of other clients in the same round; only one was captured")
    cos = s.dots / (s.norms * s.update_norm).clamp_min(1e-30)
    mu = s.ref_cos.mean(1)
    # the authors' spread: population variance (numpy's default) + 1e-8
    sd = (s.ref_cos.var(1, correction=0) + 1e-8).sqrt() if s.ref_cos.shape[1] > 1 else torch.ones_like(mu)
    return stats.norm.cdf(((cos - mu) / sd).numpy())


def fedmia_rounds(per_round: Sequence[np.ndarray]) -> np.ndarray:
    """FedMIA over rounds: the mean of the per-round scores of :func:`fedmia` (the authors' average
    over communication rounds of the per-round test)."""
    return np.mean(np.stack(per_round), axis=0)


@FEDERATED_ATTACKS.register("grad-norm")
def grad_norm(s: GradientStats) -> np.ndarray:
    """Minus the record's gradient norm on the model the client returned."""
    return (-s.norms_after).numpy()


def gradient_stats(
    model: nn.Module,
    weights_before: Mapping[str, torch.Tensor],
    update: Mapping[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    step_weight: float,
    references: Sequence[Mapping[str, torch.Tensor]] = (),
    device: torch.device | str = "cpu",
) -> GradientStats:
    """Per-record statistics of ``images`` against one client's ``update`` and the ``references``
    (other clients' updates from the same global weights); two vmapped passes.

    ``weights_before`` and ``update`` are whole state dicts: the model the client returned,
    ``weights_before + update``, carries its updated BatchNorm statistics too.
    """
    names = [n for n, _ in model.named_parameters()]
    dirs = [{n: -u[n].double() for n in names} for u in (update, *references)]
    norms, dots = per_sample_stats(model, weights_before, images, labels, dirs, device=device)
    after = {k: (w.double() + update[k].double()).to(w.dtype) if k in update else w for k, w in weights_before.items()}
    norms_after, _ = per_sample_stats(model, after, images, labels, device=device)
    unorm = torch.tensor([float(sum(d[n].pow(2).sum() for n in names)) ** 0.5 for d in dirs], dtype=torch.float64)
    ref_cos = dots[:, 1:] / (norms[:, None] * unorm[None, 1:]).clamp_min(1e-30)
    return GradientStats(dots[:, 0], norms, norms_after, float(unorm[0]), step_weight, ref_cos)


def attribute_records(scores: np.ndarray) -> np.ndarray:
    """Client-level inference: for a (C, N) score matrix of C clients' updates against N records,
    the client most likely to hold each record (argmax over clients)."""
    return np.asarray(scores).argmax(0)
