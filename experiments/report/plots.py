"""Report figures (matplotlib, Agg): privacy-utility trade-off, PSNR vs dropout, ROC curves.

Each function takes store groups (or cell folders) and returns PNG bytes, or ``None`` when
the run holds nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiments.report.aggregate import Group
from experiments.report.questions import ACCURACY, AUC, PSNR, ROUND_PSNR
from experiments.store import CellRecord


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _success(g: Group) -> tuple[str, float] | None:
    """The strongest attack's success in a group: max AUC (membership) or max PSNR (federated)."""
    for names, label in (
        (AUC, "membership AUC (strongest attack)"),
        (ROUND_PSNR if g.kind == "federated" else PSNR, "reconstruction PSNR (dB)"),
    ):
        values = [g.stat(a, *names).mean for a in g.attacks() if g.stat(a, *names).n]
        values = [v for v in values if not math.isnan(v)]
        if values:
            return label, max(values)
    return None


def privacy_utility(groups: Sequence[Group]) -> bytes | None:
    """Accuracy vs attack success, one curve per defense family, one panel per kind."""
    panels: dict[str, dict[str, list[tuple[float, float, str]]]] = {}
    xlabels: dict[str, str] = {}
    for g in groups:
        acc = g.stat("", *ACCURACY)
        success = _success(g)
        if not acc.n or success is None:
            continue
        xlabels[g.kind] = success[0]
        panels.setdefault(g.kind, {}).setdefault(g.defense, []).append((success[1], acc.mean, g.setting))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, (kind, curves) in zip(axes[0], panels.items(), strict=True):
        for defense, points in curves.items():
            points.sort()
            xs, ys, _ = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=defense)
            for x, y, t in points:
                if t != "-":
                    ax.annotate(t, (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(xlabels[kind] + " (left = more private)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"privacy-utility trade-off ({kind})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def psnr_vs_dropout(groups: Sequence[Group]) -> bytes | None:
    """Inversion PSNR against the dropout rate p, one line per attack (and dataset/model)."""
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for g in groups:
        if g.kind != "inversion" or (g.defense not in ("none",) and "dropout" not in g.labels):
            continue
        p = float(g.labels.get("dropout", 0.0)) if g.defense != "none" else 0.0
        for attack in g.attacks():
            s = g.stat(attack, *PSNR)
            if s.n:
                lines.setdefault(f"{attack} ({g.dataset}, {g.model})", []).append((p, s.mean, s.std))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        points.sort()
        ps, means, stds = (np.array(v) for v in zip(*points, strict=True))
        ax.errorbar(ps, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("dropout rate p")
    ax.set_ylabel("PSNR (dB, higher = more leakage)")
    ax.set_title("gradient inversion vs dropout")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def roc_curves(groups: Sequence[Group], run_dir: Path, records: Sequence[CellRecord]) -> bytes | None:
    """ROC curves (log-log) per membership attack, one line per defense setting (first seed), each
    setting trained with DP against its own (epsilon, delta) bound, as its first seed recorded it."""
    from attacks.membership.plots import draw_roc_settings

    cell_metrics = {r.key: r.metrics.get("", {}) for r in records}
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray, tuple[float, float] | None]]] = {}
    for g in groups:
        if g.kind != "membership":
            continue
        scores = load_scores(run_dir / "cells" / g.keys[0])
        if scores is None:
            continue
        members, per_attack = scores
        budget = _dp_budget(cell_metrics.get(g.keys[0], {}))
        label = f"{g.defense} {g.setting}" if g.setting != "-" else g.defense
        for attack, s in per_attack.items():
            panels.setdefault(f"{attack} ({g.dataset}, {g.model})", {})[label] = (s, members, budget)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        draw_roc_settings(ax, curves, title=title, fontsize=7)
    return _png(fig)


def _dp_budget(cell_metrics: dict[str, float]) -> tuple[float, float] | None:
    """A cell's (epsilon, delta) when it trained with DP (both recorded and finite), else ``None``."""
    eps, delta = cell_metrics.get("epsilon_record", math.nan), cell_metrics.get("delta", math.nan)
    return (eps, delta) if math.isfinite(eps) and math.isfinite(delta) else None


def load_scores(cell_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Membership scores saved by a cell (``scores.npz``: ``members`` and ``score_<attack>``)."""
    path = cell_dir / "scores.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        members = data["members"]
        per_attack = {k[len("score_") :]: data[k] for k in data.files if k.startswith("score_")}
    return (members, per_attack) if per_attack else None


def reconstruction_grids(groups: Sequence[Group], run_dir: Path) -> list[tuple[str, Path]]:
    """The ``grid.png`` of each inversion group's first seed, with a caption."""
    out = []
    for g in groups:
        if g.kind not in ("inversion", "federated"):
            continue
        path = run_dir / "cells" / g.keys[0] / "grid.png"
        if path.is_file():
            setting = "" if g.setting == "-" else f" ({g.setting})"
            out.append((f"{g.kind}: {g.dataset}, {g.model}, {g.defense}{setting}, seed {g.seeds[0]}", path))
    return out
