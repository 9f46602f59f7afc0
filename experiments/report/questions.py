"""The report's tables, one per question, built only from the result store's groups.

"Which defense stops which attack": PSNR/SSIM of gradient inversion (Geiping et al., 2020;
Scheliga et al., 2023) and AUC / TPR at low FPR of membership inference (Carlini et al.,
2022), per defense setting, the best defense per attack highlighted. "At what utility cost":
the accuracy each defense setting leaves, and its privacy budget: one column per unit (an
epsilon that protects one record, or one that protects a whole client) with its delta.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from experiments.report.aggregate import Group, Stat
from experiments.report.tables import ZERO_FP_NOTE, format_table, tpr_label
from fl.privacy_units import PRIVACY_UNITS, unit_label

# metric names as the results name them in rows() (experiments/*/results.py; first match wins)
PSNR = ("psnr_mean",)
SSIM = ("ssim_mean",)
LABEL_ACC = ("label_acc",)
AUC = ("auc",)
TPR_01 = ("tpr@0.1%",)
TPR_1 = ("tpr@1%",)
ACCURACY = ("test_accuracy", "final_accuracy")  # a target model's; a federation's
EPSILON = {unit: (f"epsilon_{unit.replace('-', '_')}",) for unit in PRIVACY_UNITS}  # never mixed: one per unit
DELTA = ("delta",)
ROUND_PSNR = ("psnr_mean",)

GROUP_HEADER = ("Dataset", "Model", "Defense", "Setting")
EPSILON_NOTE = (
    "per record: DP-SGD on the clients, one training record; per client, central: central DP, one "
    "client as seen in the released models, not by the server; per client, local: local DP, one "
    "client against the server"
)


@dataclass(frozen=True)
class Column:
    """One metric column: where to read it and which direction means 'better defense'."""

    label: str
    names: tuple[str, ...]
    attack: str = ""  # '' = cell-level metric
    best: Callable[[float], float] | None = None  # key to minimise for the highlight; None = none
    digits: int = 2
    style: str = "f"  # format type of Stat.text: "f" (decimals) or "g" (significant digits)
    spread: bool = True  # show the std over seeds (False for a setting such as delta)


@dataclass(frozen=True)
class Table:
    """A rendered-ready table: question, caption, header, rows and highlighted cells."""

    key: str
    title: str
    caption: str
    header: tuple[str, ...]
    rows: list[list[str]]
    highlight: set[tuple[int, int]] = field(default_factory=set)

    def render(self, fmt: str) -> str:
        return format_table(self.header, self.rows, fmt, highlight=self.highlight)


def _lower(v: float) -> float:
    return v


def _higher(v: float) -> float:
    return -v


def _to_half(v: float) -> float:
    return abs(v - 0.5)


def build_table(key: str, title: str, caption: str, groups: Sequence[Group], columns: Sequence[Column]) -> Table:
    """Rows = groups; highlight the best value of each column within each (dataset, model) block."""
    header = (*GROUP_HEADER, *(c.label for c in columns))
    rows, stats = [], []
    for g in groups:
        row_stats = [g.stat(c.attack, *c.names) for c in columns]
        stats.append(row_stats)
        rows.append(
            [
                g.dataset,
                g.model,
                g.defense,
                g.setting,
                *(s.text(c.digits, c.style, spread=c.spread) for s, c in zip(row_stats, columns, strict=True)),
            ]
        )
    highlight: set[tuple[int, int]] = set()
    blocks: dict[tuple[str, str, str], list[int]] = {}
    for i, g in enumerate(groups):
        blocks.setdefault((g.kind, g.dataset, g.model), []).append(i)
    for j, col in enumerate(columns):
        if col.best is None:
            continue
        for members in blocks.values():
            scored = [
                (col.best(stats[i][j].mean), i) for i in members if stats[i][j].n and not math.isnan(stats[i][j].mean)
            ]
            if len(scored) > 1:
                top = min(s for s, _ in scored)
                highlight |= {(i, len(GROUP_HEADER) + j) for s, i in scored if s == top}
    return Table(key=key, title=title, caption=caption, header=header, rows=rows, highlight=highlight)


def _attacks(groups: Sequence[Group]) -> list[str]:
    seen: dict[str, None] = {}
    for g in groups:
        seen.update(dict.fromkeys(g.attacks()))
    return list(seen)


def inversion_table(groups: Sequence[Group]) -> Table | None:
    groups = [g for g in groups if g.kind == "inversion"]
    if not groups:
        return None
    cols = []
    for a in _attacks(groups):
        cols += [
            Column(f"{a} PSNR (dB)", PSNR, a, _lower, 1),
            Column(f"{a} SSIM", SSIM, a, _lower, 3),
            Column(f"{a} label acc", LABEL_ACC, a, _lower, 2),
        ]
    return build_table(
        "inversion",
        "Which defense stops which attack: gradient inversion",
        "Reconstruction quality of each attack and the accuracy of the labels it recovered (lower = "
        "better defense), mean ± std over seeds; the best defense per attack and dataset/model is highlighted.",
        groups,
        cols,
    )


def membership_table(groups: Sequence[Group]) -> Table | None:
    groups = [g for g in groups if g.kind == "membership"]
    if not groups:
        return None
    cols = []
    for a in _attacks(groups):
        n_out = min((g.stat(a, "n_nonmembers").mean for g in groups if g.stat(a, "n_nonmembers").n), default=math.inf)
        cols += [
            Column(f"{a} AUC", AUC, a, _to_half, 3),
            Column(f"{a} {tpr_label(0.001, n_out)}", TPR_01, a, _lower, 3),
            Column(f"{a} {tpr_label(0.01, n_out)}", TPR_1, a, _lower, 3),
        ]
    caption = (
        "AUC (0.5 = chance; closest to 0.5 highlighted) and true-positive rate at low false-positive "
        "rates (lower = better defense), mean ± std over seeds."
    )
    if any(c.label.endswith("*") for c in cols):
        caption += f" {ZERO_FP_NOTE}."
    # a ROC significantly above the target's (epsilon, delta)-DP bound can only be a bug or an accounting error
    above = [
        f"{a} ({g.dataset}, {g.model}, {g.defense} {g.setting})"
        for g in groups
        for a in g.attacks()
        if g.stat(a, "bound_violated").mean > 0
    ]
    if above:
        caption += f" WARNING: {'; '.join(above)} lies significantly above its DP bound: a bug or an accounting error."
    return build_table("membership", "Which defense stops which attack: membership inference", caption, groups, cols)


def epsilon_columns(groups: Sequence[Group]) -> list[Column]:
    """One ε column per unit the groups report (``fl.privacy_units``), then δ; none without DP."""
    cols = [
        Column(f"ε per {unit_label(unit)}", names, "", None, 2)
        for unit, names in EPSILON.items()
        if any(g.stat("", *names).n for g in groups)
    ]
    return [*cols, Column("δ", DELTA, "", None, 2, "g", spread=False)] if cols else []


def federated_table(groups: Sequence[Group]) -> Table | None:
    groups = [g for g in groups if g.kind == "federated"]
    if not groups:
        return None
    cols = [Column("Accuracy", ACCURACY, "", _higher, 3), *epsilon_columns(groups)]
    cols += [Column(f"{a} PSNR (dB)", ROUND_PSNR, a, _lower, 1) for a in _attacks(groups)]
    return build_table(
        "federated",
        "Curious server in a federation: attack success and accuracy",
        f"Final global accuracy, privacy budget ε at δ ({EPSILON_NOTE}), and the curious server's "
        "reconstruction PSNR of the captured client updates (lower = better defense), mean ± std over seeds.",
        groups,
        cols,
    )


def utility_table(groups: Sequence[Group]) -> Table | None:
    groups = [g for g in groups if g.stat("", *ACCURACY).n]
    if not groups:
        return None
    table = build_table(
        "utility",
        "At what utility cost",
        "Test accuracy left by each defense setting (highest highlighted), its change against no "
        f"defense on the same dataset and model, and the privacy budget ε at δ where one applies ({EPSILON_NOTE}).",
        groups,
        [Column("Accuracy", ACCURACY, "", _higher, 3), *epsilon_columns(groups)],
    )
    baseline = {(g.kind, g.dataset, g.model): g.stat("", *ACCURACY) for g in groups if g.defense == "none"}
    header = (*table.header[:4], "Kind", *table.header[4:5], "Δ vs none", *table.header[5:])
    rows = []
    for g, row in zip(groups, table.rows, strict=True):
        base = baseline.get((g.kind, g.dataset, g.model))
        acc = g.stat("", *ACCURACY)
        delta = "-" if base is None or not base.n else f"{acc.mean - base.mean:+.3f}"
        rows.append([*row[:4], g.kind, row[4], delta, *row[5:]])
    highlight = {(i, j + 1 if j >= 4 else j) for i, j in table.highlight}
    return Table(key=table.key, title=table.title, caption=table.caption, header=header, rows=rows, highlight=highlight)


def all_tables(groups: Sequence[Group]) -> list[Table]:
    """Every table the groups support, in reading order."""
    builders = (inversion_table, membership_table, federated_table, utility_table)
    return [t for t in (b(groups) for b in builders) if t is not None]


__all__ = ["Column", "Stat", "Table", "all_tables", "build_table"]
