"""ROC figures on log-log axes (Carlini et al., S&P 2022), with the DP bound when it applies."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from attacks.membership.metrics import dp_tpr_bound, roc_curve
from fl.core.runs import atomic_write_bytes


def _figure(size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def _draw(ax: Any, scores: np.ndarray, members: np.ndarray, floor: float, **style: Any) -> None:
    """One ROC curve, clipped at ``floor`` so that zero rates stay on the log axes."""
    fpr, tpr, _ = roc_curve(scores, members)
    ax.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), **style)


def _floor(members: np.ndarray) -> float:
    """Half of the smallest non-zero FPR: where a curve's zero rates are drawn."""
    return 0.5 / max(cast(int, np.count_nonzero(~np.asarray(members).astype(bool))), 1)


def _axes(ax: Any, floor: float, title: str, fontsize: float = 8) -> None:
    """The chance diagonal and log-log axes that start at ``floor``, where zero rates are drawn."""
    grid = np.logspace(np.log10(floor), 0, 400)
    ax.plot(grid, grid, "k--", lw=1, label="chance")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(floor, 1),
        ylim=(floor, 1.02),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=title,
    )
    ax.legend(loc="lower right", fontsize=fontsize)
    ax.grid(True, which="major", alpha=0.3)


def _save(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


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
    fig, ax = _figure((5, 5))
    floor = min([1.0, *(_floor(m) for _, m in curves.values())])
    for name, (scores, members) in curves.items():
        _draw(ax, scores, members, floor, label=name, lw=1.5)
    if epsilon is not None:
        grid = np.logspace(np.log10(floor), 0, 400)
        ax.plot(
            grid,
            dp_tpr_bound(grid, epsilon, delta),
            "r:",
            lw=1.5,
            label=f"DP bound (ε={epsilon:.3g} per record, δ={delta:g})",
        )
    _axes(ax, floor, title)
    _save(fig, path)


def draw_roc_settings(
    ax: Any,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, tuple[float, float] | None]],
    *,
    title: str = "",
    fontsize: float = 8,
) -> None:
    """Draw one attack's ROC across settings on ``ax``: ``name -> (scores, members, (epsilon, delta))``.

    A setting with a DP budget (not ``None``) also gets its (epsilon, delta)-DP bound, dotted in
    the curve's colour, so a DP curve is read against its own bound. Zero rates are drawn at
    half the smallest non-zero FPR, where the axes start.
    """
    floor = min([1.0, *(_floor(m) for _, m, _ in curves.values())])
    grid = np.logspace(np.log10(floor), 0, 400)
    for i, (name, (scores, members, budget)) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        _draw(ax, scores, members, floor, label=name, lw=1.5, color=colour)
        if budget is not None:
            eps, delta = budget
            ax.plot(
                grid,
                dp_tpr_bound(grid, eps, delta),
                ":",
                color=colour,
                lw=1.2,
                label=f"DP bound ε={eps:.3g} per record, δ={delta:g}",
            )
    _axes(ax, floor, title, fontsize)


def plot_roc_settings(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None]],
    path: str | Path,
    *,
    delta: float = 1e-5,
    title: str = "",
) -> None:
    """Write a PNG overlaying one attack's ROC across settings: ``name -> (scores, members, epsilon)``,
    each setting with an ``epsilon`` against its own (epsilon, delta)-DP bound (:func:`draw_roc_settings`)."""
    fig, ax = _figure((5.5, 5.5))
    draw_roc_settings(
        ax,
        {k: (s, m, None if eps is None else (eps, delta)) for k, (s, m, eps) in curves.items()},
        title=title,
    )
    _save(fig, path)
