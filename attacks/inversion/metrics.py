"""Reconstruction metrics: MSE, PSNR, SSIM, label accuracy, and optimal matching for batches.

SSIM follows Wang et al. (IEEE TIP 2004): 11x11 Gaussian window with sigma 1.5, constants
``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with data range ``L = 1``, averaged over the valid
window positions and the channels. Batches are scored after matching every reconstruction to
a ground-truth image by optimal assignment (Hungarian algorithm on the MSE). LPIPS
(:mod:`attacks.inversion.lpips`) is added when the caller loaded its weights.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from attacks.inversion.lpips import LPIPS


def mse(x: Tensor, ref: Tensor) -> Tensor:
    """Per-image mean squared error over (N, C, H, W) tensors."""
    return ((x.double() - ref.double()) ** 2).flatten(1).mean(1)


def psnr(x: Tensor, ref: Tensor, *, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB (infinite for an exact copy)."""
    err = mse(x, ref)
    return 10.0 * torch.log10(data_range**2 / err)


def _gaussian_window(size: int, sigma: float, channels: int) -> Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: Tensor, ref: Tensor, *, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image structural similarity (Gaussian window, standard constants)."""
    x, ref = x.double(), ref.double()
    c = x.shape[1]
    w = _gaussian_window(min(window, x.shape[-1], x.shape[-2]), sigma, c).to(x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(ref, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(ref * ref, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * ref, w, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).flatten(1).mean(1)


def _assign(a: Tensor, b: Tensor) -> Tensor:
    """For each row of ``a`` (len(a) <= len(b)), the distinct row of ``b`` with the least total
    MSE. The MSE matrix comes from inner products, so its memory is len(a) x len(b), not times the
    pixels (a 2048-image client update would need 26 GB)."""
    p, q = a.double().flatten(1), b.double().flatten(1)
    cost = ((p * p).sum(1)[:, None] + (q * q).sum(1)[None] - 2 * p @ q.T).clamp_min(0) / p.shape[1]
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(cols[rows.argsort()], dtype=torch.long)


def match(x: Tensor, ref: Tensor) -> Tensor:
    """Permutation ``perm`` such that ``x[perm[i]]`` is the reconstruction matched to ``ref[i]``
    (the assignment with the least total MSE)."""
    return _assign(ref, x)


def match_subset(x: Tensor, ref: Tensor) -> Tensor:
    """Indices ``idx`` into ``ref`` (len(x) <= len(ref)), distinct, such that ``ref[idx[i]]`` is the
    true image matched to reconstruction ``x[i]`` (the assignment with the least total MSE): an
    attack that rebuilds a part of a larger update is scored on the images it came closest to."""
    return _assign(x, ref)


def _label_hits(pred: Tensor, true: Tensor) -> int:
    return sum((Counter(pred.tolist()) & Counter(true.tolist())).values())


def label_accuracy(pred: Tensor, true: Tensor) -> float:
    """Fraction of labels recovered, as multisets (order within a batch is unknowable)."""
    return _label_hits(pred, true) / max(1, true.numel())


def label_precision(pred: Tensor, true: Tensor) -> float:
    """Fraction of the recovered labels found in the true labels' multiset (a part of an update)."""
    return _label_hits(pred, true) / max(1, pred.numel())


def score(x: Tensor, ref: Tensor, *, lpips: LPIPS | None = None) -> dict[str, list[float]]:
    """Per-image MSE, PSNR and SSIM (and LPIPS when a model is given) of ``x`` against ``ref``
    after optimal matching."""
    x = x[match(x, ref)]
    out = {
        "mse": mse(x, ref).tolist(),
        "psnr": psnr(x, ref).tolist(),
        "ssim": ssim(x, ref).tolist(),
    }
    if lpips is not None:
        with torch.no_grad():
            out["lpips"] = lpips(x.cpu(), ref.cpu()).tolist()
    return out
