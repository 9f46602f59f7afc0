"""Cell kinds: how one grid cell becomes a typed config and a call to another package's runner.

Each kind (inversion, membership, federated) maps the scenario's generic keys (dataset,
model, attacks, defense, seed, budget) onto its package's frozen config dataclass and calls
that package's entry point. A new kind is one subclass registered in :data:`CELL_KINDS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from defenses import DefenseConfig
from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.core.results import RunResult
from fl.core.schema import Schema


@dataclass(frozen=True)
class CellSpec:
    """The generic description of one cell, before it becomes the kind's typed config."""

    kind: str
    where: str  # scenario location for error messages, e.g. "inversion[0]"
    dataset: str
    model: str
    attacks: tuple[str, ...]
    defense: DefenseConfig
    seed: int
    budget: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


class CellKind:
    """Base class: subclasses name their config type, map the spec onto it and run it."""

    name: str = ""
    # True when cells must share one long-lived process (the federation engine's Ray instance).
    shared_engine: bool = False
    # scenario budget key -> config field (e.g. "iterations" -> "iters")
    budget_keys: Mapping[str, str] = {}
    # False: the config holds one attack, so the block's attacks list becomes a grid axis
    attacks_per_cell: bool = True
    # defense families the kind can express
    defenses: tuple[str, ...] = ("none",)

    def engine(self) -> AbstractContextManager[None]:
        """Context kept open around all of a grid's cells of this kind in one process."""
        return nullcontext()

    def schema(self) -> Schema:
        """The kind's schema: the scenario keys of a block's ``options`` are its settings."""
        raise NotImplementedError

    def attack_names(self) -> list[str]:
        """Attacks this kind can run (unknown ones in a scenario fail with this list)."""
        raise NotImplementedError

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        """Config field values for ``spec`` (dataset, model, attacks, defense, seed)."""
        raise NotImplementedError

    def run(
        self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path, progress: bool
    ) -> RunResult:
        """Run one cell and return its typed result (its ``rows()`` are the cell's metrics)."""
        raise NotImplementedError

    def target_label(self, config: Any) -> str:
        """What the cell attacks, when the kind's tables must say it beside the defense setting ('' = nothing)."""
        return ""

    def check_data(self, config: Any, data_root: str | None) -> None:
        """Refuse, before any cell runs, a config its data cannot serve (e.g. more records than the
        dataset has). Data that cannot be loaded is left for the cell to report."""

    def build_config(self, spec: CellSpec) -> Any:
        """The kind's typed config for ``spec``; bad keys or values fail naming them."""
        valid = self.attack_names()
        for attack in spec.attacks:
            if attack not in valid:
                raise ConfigError(
                    f"unknown attack {attack!r} in {spec.where}.attacks; valid choices: {', '.join(valid)}"
                )
        if spec.defense.name not in self.defenses:
            raise ConfigError(
                f"{spec.where}: {self.name} cells cannot apply defense {spec.defense.name!r};"
                f" valid choices: {', '.join(self.defenses)}"
            )
        values = self.config_values(spec)
        for key, value in spec.budget.items():
            if key not in self.budget_keys:
                raise ConfigError(
                    f"unknown key {key!r} in {spec.where}.budget; valid keys: {', '.join(self.budget_keys)}"
                )
            values[self.budget_keys[key]] = self.budget_value(key, value, spec.where)
        values.update(spec.options)
        try:
            return self.schema().build(values, where=spec.where)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{self._budget_hint(spec, str(exc))}") from None

    def _budget_hint(self, spec: CellSpec, message: str) -> str:
        """Name the scenario's budget keys behind config fields that an error message mentions."""
        renamed = [
            f"{spec.where}.budget.{key} sets {self.budget_keys[key]!r}"
            for key in spec.budget
            if self.budget_keys[key] != key and re.search(rf"\b{re.escape(self.budget_keys[key])}\b", message)
        ]
        return f" ({'; '.join(renamed)})" if renamed else ""

    def budget_value(self, key: str, value: Any, where: str) -> Any:
        """Translate a budget value for its config field (identity by default)."""
        return value


CELL_KINDS: Registry[CellKind] = Registry("cell kind")
