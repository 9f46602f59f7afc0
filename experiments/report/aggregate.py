"""Aggregation over seeds: cells that differ only by seed become one group with mean, std and n."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.store import CellRecord


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one metric over seeds (std is 0 for one seed)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, 0)
        std = statistics.stdev(finite) if len(finite) > 1 else 0.0
        return cls(statistics.fmean(finite), std, len(finite))

    def text(self, digits: int = 2, style: str = "f", *, spread: bool = True) -> str:
        """``mean ± std`` (std over seeds, omitted for one seed or ``spread=False``); ``-`` when unmeasured.

        ``style`` is the format type: ``"f"`` for ``digits`` decimals, ``"g"`` for ``digits`` significant ones.
        """
        if self.n == 0:
            return "-"
        if math.isinf(self.mean):
            return "inf"
        if self.n == 1 or not spread:
            return f"{self.mean:.{digits}{style}}"
        return f"{self.mean:.{digits}{style}} ± {self.std:.{digits}{style}}"


@dataclass(frozen=True)
class Group:
    """All seeds of one (kind, dataset, model, defense, setting)."""

    kind: str
    dataset: str
    model: str
    defense: str
    setting: str
    labels: dict[str, Any]
    seeds: tuple[int, ...]
    keys: tuple[str, ...]
    metrics: dict[str, dict[str, Stat]] = field(default_factory=dict)  # attack ('' = cell) -> metric -> Stat

    def stat(self, attack: str, *names: str) -> Stat:
        """The first of ``names`` this group measured for ``attack`` (an empty Stat if none)."""
        table = self.metrics.get(attack, {})
        for name in names:
            if name in table:
                return table[name]
        return Stat(math.nan, math.nan, 0)

    def attacks(self) -> list[str]:
        return [a for a in self.metrics if a]


def aggregate(records: Sequence[CellRecord]) -> list[Group]:
    """Group finished cells over seeds, in the order the scenario declared them."""
    buckets: dict[tuple[str, ...], list[CellRecord]] = {}
    for rec in records:
        buckets.setdefault((rec.kind, rec.dataset, rec.model, rec.defense, rec.setting), []).append(rec)
    groups = []
    for (kind, dataset, model, defense, setting), recs in buckets.items():
        values: dict[str, dict[str, list[float]]] = {}
        for rec in recs:
            for attack, metrics in rec.metrics.items():
                for name, value in metrics.items():
                    values.setdefault(attack, {}).setdefault(name, []).append(value)
        stats = {a: {m: Stat.of(v) for m, v in ms.items()} for a, ms in values.items()}
        groups.append(
            Group(
                kind=kind,
                dataset=dataset,
                model=model,
                defense=defense,
                setting=setting,
                labels=recs[0].labels,
                seeds=tuple(r.seed for r in recs),
                keys=tuple(r.key for r in recs),
                metrics=stats,
            )
        )
    return groups
