"""ROC figures on log-log axes (Carlini et al., S&P 2022), with the DP bound when it applies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from attacks.membership.metrics import dp_tpr_bound, roc_curve
from fl.runs import atomic_write_bytes


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    epsilon: float | None = None,
    delta: float = 1e-5,
    title: str = "",
) -> None:
    """Write a PNG of ``name -> (scores, members)`` ROC curves, the diagonal and, given the target's
    ``epsilon``, the (epsilon, delta)-DP upper bound on TPR."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    floor = 1.0
    for name, (scores, members) in curves.items():
        fpr, tpr, _ = roc_curve(scores, members)
        floor = min(floor, 0.5 / max(np.count_nonzero(~members.astype(bool)), 1))
        ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name, lw=1.5)
    grid = np.logspace(np.log10(floor), 0, 400)
    ax.plot(grid, grid, "k--", lw=1, label="chance")
    if epsilon is not None:
        ax.plot(
            grid,
            dp_tpr_bound(grid, epsilon, delta),
            "r:",
            lw=1.5,
            label=f"DP bound (ε={epsilon:.3g}, δ={delta:g})",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(floor, 1),
        ylim=(floor, 1.02),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
