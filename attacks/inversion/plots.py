"""The reconstruction grid: ground truth on the first row, one row per attack."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

MAX_COLUMNS = 32  # images drawn; a larger run's grid shows the first ones


def save_grid(
    path: str | Path,
    truth: torch.Tensor,
    rows: Mapping[str, torch.Tensor],
    psnr: Mapping[str, Sequence[float]] | None = None,
    title: str | None = None,
) -> None:
    """Write a PNG grid of ``truth`` (N, C, H, W) above every attack's reconstructions (``rows``,
    each matched to ``truth``), each image's PSNR under it; ``title`` above the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fl.core.runs import atomic_write_bytes

    n = min(truth.shape[0], MAX_COLUMNS)
    names = ["ground truth", *rows]
    images = [truth, *rows.values()]
    fig, axes = plt.subplots(len(names), n, figsize=(1.3 * n + 1.2, 1.45 * len(names)), squeeze=False)
    for r, (name, batch) in enumerate(zip(names, images, strict=True)):
        for c in range(n):
            ax = axes[r][c]
            img = batch[c].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if psnr is not None and name in psnr:  # under its own image (a title reads as the row above's)
                ax.set_xlabel(f"{psnr[name][c]:.1f} dB", fontsize=7, labelpad=2)
        axes[r][0].set_ylabel(name, fontsize=8)
    shown = f"first {n} of {truth.shape[0]} images (the scores cover every image)" if n < truth.shape[0] else ""
    if title or shown:
        fig.suptitle("; ".join(t for t in (title, shown) if t), fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
