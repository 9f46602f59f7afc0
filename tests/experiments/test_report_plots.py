"""Report figures: the combined ROC draws each DP setting's bound, and no curve falls off its axes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attacks.membership.metrics import dp_tpr_bound
from experiments.report import Group, Stat, plots
from experiments.store import CellRecord

N_OUT = 150  # non-members: the smallest non-zero FPR is 1/150


def _cell(
    run_dir: Path, key: str, defense: str, setting: str, cell_metrics: dict[str, float], shift: float
) -> tuple[Group, CellRecord]:
    rng = np.random.default_rng(len(key))
    members = np.arange(2 * N_OUT) < N_OUT
    score = rng.normal(size=2 * N_OUT) + shift * members
    score[0] = 100.0  # one member above every non-member: the curve starts at FPR = 0
    (run_dir / "cells" / key).mkdir(parents=True)
    np.savez(run_dir / "cells" / key / "scores.npz", members=members, score_loss=score, score_lira=score**3)
    metrics = {"": cell_metrics, "loss": {"auc": 0.6}, "lira": {"auc": 0.6}}
    group = Group(
        kind="membership",
        dataset="d",
        model="m",
        defense=defense,
        setting=setting,
        labels={},
        seeds=(0,),
        keys=(key,),
        metrics={a: {k: Stat.of([v]) for k, v in ms.items()} for a, ms in metrics.items()},
    )
    record = CellRecord(
        key=key,
        kind="membership",
        dataset="d",
        model="m",
        defense=defense,
        setting=setting,
        seed=0,
        config={},
        labels={},
        status="done",
        summary=None,
        error=None,
        wall_s=1.0,
        device="cpu",
        versions=None,
        metrics=metrics,
    )
    return group, record


def test_roc_draws_each_dp_bound_in_its_colour_and_keeps_zero_rates_on_the_axes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cells = [
        _cell(tmp_path, "none0", "none", "-", {"test_accuracy": 0.7}, 1.0),
        _cell(tmp_path, "eps1", "dp-local", "target_epsilon=1.0", {"epsilon_record": 1.0, "delta": 1e-5}, 0.5),
        _cell(tmp_path, "eps8", "dp-local", "target_epsilon=8.0", {"epsilon_record": 7.9, "delta": 1e-3}, 0.8),
        _cell(tmp_path, "inf", "dp-local", "target_epsilon=inf", {"epsilon_record": math.inf, "delta": 1e-5}, 1.0),
    ]
    figures: list[Any] = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"png")
    assert plots.roc_curves([g for g, _ in cells], tmp_path, [r for _, r in cells]) == b"png"
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["loss (d, m)", "lira (d, m)"]
    floor = 0.5 / N_OUT
    for ax in axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {
            "none",
            "dp-local target_epsilon=1.0",
            "dp-local target_epsilon=8.0",
            "dp-local target_epsilon=inf",
            "DP bound ε=1 per record, δ=1e-05",
            "DP bound ε=7.9 per record, δ=0.001",
            "chance",
        }
        for setting, bound, (eps, delta) in (("1.0", "1", (1.0, 1e-5)), ("8.0", "7.9", (7.9, 1e-3))):
            line = lines[f"DP bound ε={bound} per record, δ={delta:g}"]
            assert line.get_linestyle() == ":"
            assert line.get_color() == lines[f"dp-local target_epsilon={setting}"].get_color()
            np.testing.assert_allclose(line.get_ydata(), dp_tpr_bound(line.get_xdata(), eps, delta))
        assert ax.get_xlim()[0] == pytest.approx(floor) and ax.get_ylim()[0] == pytest.approx(floor)
        for name in ("none", "dp-local target_epsilon=1.0"):
            x, y = lines[name].get_xdata(), lines[name].get_ydata()
            assert x[0] == pytest.approx(floor)  # the zero FPR, drawn on the axes, not below them
            assert x.min() >= ax.get_xlim()[0] and y.min() >= ax.get_ylim()[0]
