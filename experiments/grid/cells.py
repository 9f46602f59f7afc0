"""Grid expansion: a scenario becomes a list of cells, each keyed by a hash of its resolved config."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from defenses import DEFENSES, DefenseConfig
from defenses.config import DEFENSE_SETTINGS, unread_setting
from experiments.grid.kinds.base import CellKind, CellSpec
from experiments.grid.scenario import DefenseGrid, Scenario
from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.core.runs import to_jsonable


@dataclass(frozen=True)
class Cell:
    """One unit of work: a kind, its typed config, and the labels reports group by."""

    key: str  # 16 hex digits of sha256(kind + resolved config)
    kind: str
    dataset: str
    model: str
    defense: str  # the [defenses.NAME] label
    setting: str  # the defense options, e.g. "dropout=0.25"
    seed: int
    attacks: tuple[str, ...]
    config: dict[str, Any]  # JSON form of ``typed``
    labels: dict[str, Any]  # the defense options as numbers, for plots (e.g. {"dropout": 0.25})
    typed: Any = field(compare=False, repr=False)


def cell_key(kind: str, config: dict[str, Any]) -> str:
    """Stable key of a cell: sha256 over the kind and the canonical JSON of its resolved config."""
    blob = json.dumps({"kind": kind, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def defense_settings(grid: DefenseGrid, known: Collection[str]) -> list[tuple[DefenseConfig, str, dict[str, Any]]]:
    """Every combination of a defense table's list-valued options: (config, setting text, labels).

    ``known`` are the defense names some cell kind can apply (the ``defenses`` registry's and
    those a kind implements itself, like DP-SGD for a centralised membership target).
    """
    out = []
    names = list(grid.axes)
    for combo in itertools.product(*(grid.axes[n] for n in names)):
        values = {**grid.fixed, **dict(zip(names, combo, strict=True))}
        where = f"defenses.{grid.label}"
        family = values.get("name")
        if family not in known:
            raise ConfigError(f"unknown defense {family!r} in {where}; valid choices: {', '.join(known)}")
        try:
            config = DefenseConfig.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if (unread := unread_setting(family, values)) is not None:
            reads = ", ".join(DEFENSE_SETTINGS[family]) or "no settings"
            raise ConfigError(f"{where}: {unread!r} is not a setting of the {family} defense, which takes {reads}")
        labels = {k: v for k, v in values.items() if k != "name"}
        shown = {k: labels[k] for k in names} or labels  # the grid axes, else the fixed options
        setting = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) or "-"
        out.append((config, setting, labels))
    return out


def expand(scenario: Scenario, *, kinds: Registry[CellKind]) -> list[Cell]:
    """All cells of ``scenario`` (datasets x models x defense settings x seeds per block), deduplicated."""
    try:
        return _expand(scenario, kinds)
    except ConfigError as exc:
        raise ConfigError(f"scenario {scenario.origin}: {exc}") from None


def _expand(scenario: Scenario, kinds: Registry[CellKind]) -> list[Cell]:
    cells: dict[str, Cell] = {}
    known = list(dict.fromkeys([*DEFENSES.names(), *(d for _, k in kinds.items() for d in k.defenses)]))
    for block in scenario.blocks:
        kind = kinds.get(block.kind)
        settings = [(label, s) for label in block.defenses for s in defense_settings(scenario.defenses[label], known)]
        attack_sets = [block.attacks] if kind.attacks_per_cell else [(a,) for a in block.attacks]
        for dataset, model, attacks, (label, (defense, setting, labels)), seed in itertools.product(
            block.datasets, block.models, attack_sets, settings, scenario.seeds
        ):
            spec = CellSpec(
                kind=block.kind,
                where=block.where,
                dataset=dataset,
                model=model,
                attacks=attacks,
                defense=defense,
                seed=seed,
                budget=block.budget,
                options=block.options,
            )
            typed = kind.build_config(spec)
            if target := kind.target_label(typed):  # e.g. a federation's global model: said in the tables
                setting = target if setting == "-" else f"{target}, {setting}"
            config = to_jsonable(typed)
            key = cell_key(block.kind, config)
            cells.setdefault(
                key,
                Cell(
                    key=key,
                    kind=block.kind,
                    dataset=dataset,
                    model=model,
                    defense=label,
                    setting=setting,
                    seed=seed,
                    attacks=attacks,
                    config=config,
                    labels=labels,
                    typed=typed,
                ),
            )
    return list(cells.values())


def _fmt(value: Any) -> str:
    return "inf" if value == float("inf") else str(value)
