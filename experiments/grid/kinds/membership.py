"""Membership-inference cells: one target model per cell, every listed attack against it.

Attacks and metrics come from ``attacks.membership`` (LOSS, LiRA of Carlini et al., S&P 2022,
RMIA of Zarifzadeh et al., ICML 2024); the defense (dropout, DP-SGD, and for a federated target
central DP) shapes the target's training. A cell with ``clients > 0`` in its options audits the
final global model of a Flower federation (``experiments.membership``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec
from fl.core.errors import ConfigError, DataError
from fl.core.results import RunResult
from fl.core.schema import Schema


class MembershipKind(CellKind):
    name = "membership"
    budget_keys: Mapping[str, str] = {
        "shadow_models": "shadows",
        "epochs": "epochs",
        "pool": "pool_size",
        "population": "population_size",
        "bootstrap": "bootstrap",
    }
    defenses = ("none", "dropout", "dp-local", "dp-central")

    def schema(self) -> Schema:
        from experiments.membership.schema import membership_schema

        return membership_schema()

    def attack_names(self) -> list[str]:
        from attacks.membership import MEMBERSHIP_ATTACKS

        return MEMBERSHIP_ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        defense = spec.defense
        values: dict[str, Any] = {
            "dataset": spec.dataset,
            "model": spec.model,
            "attacks": spec.attacks,
            "defense": defense.name,
            "seed": spec.seed,
        }
        if defense.name == "dropout":
            values["dropout"] = defense.dropout
        if defense.name in ("dp-local", "dp-central"):
            if defense.target_epsilon is None:
                raise ConfigError(
                    f"{spec.where}: membership cells train to a target_epsilon; set it in the "
                    f"{defense.name} defense table"
                )
            bound = defense.max_grad_norm if defense.name == "dp-local" else defense.clipping_norm
            values.update(epsilon=defense.target_epsilon, delta=defense.delta, max_grad_norm=bound)
        return values

    def rows(self, summary: Mapping[str, Any], attacks: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """The flattened summary, the epsilon named by its unit (``epsilon_record`` for DP-SGD,
        ``epsilon_client_central`` for central DP), and a federated target's client-level AUC per
        attack (``client_auc``)."""
        out = _flatten_summary(summary, attacks)
        if "epsilon" in out.get("", {}):
            unit = summary.get("epsilon_unit") or "record"
            out[""][f"epsilon_{unit.replace('-', '_')}"] = out[""].pop("epsilon")
        for attack, level in (summary.get("client_level") or {}).items():
            out.setdefault(attack, {})["client_auc"] = float(level["auc"])
        return out

    def target_label(self, config: Any) -> str:
        """A federated target's tables say so: ``global model of N clients``."""
        return f"global model of {config.clients} clients" if config.federated else ""

    def check_data(self, config: Any, data_root: str | None) -> None:
        from experiments.membership.central import check_pool_fits, dataset_records
        from fl.data import load_dataset

        try:  # a federated target's pool is drawn from the training split, a central one's from both splits
            records = (
                len(load_dataset(config.dataset, split="train", root=data_root).labels)
                if config.federated
                else dataset_records(config.dataset, data_root)
            )
        except DataError:
            return
        check_pool_fits(config, records)

    def run(
        self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path, progress: bool
    ) -> RunResult:
        if config.federated:
            from experiments.membership import run_federation_mia

            summary = run_federation_mia(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)
        else:
            from experiments.membership import run_mia

            summary = run_mia(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)
        return _Summary(summary, self.rows(summary, config.attacks))


@dataclass(frozen=True)
class _Summary:
    summary: Mapping[str, Any]
    metrics: dict[str, dict[str, float]]

    def rows(self) -> dict[str, dict[str, float]]:
        return self.metrics

    def to_json(self) -> Any:
        return self.summary


def _flatten_summary(summary: Mapping[str, Any], attacks: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Numbers at the top level go to attack '', tables keyed by an attack name to that attack.

    A table called ``attacks`` holding per-attack tables is looked into; lists of numbers
    (per-round curves) are summarised by their last value as ``<name>_last``.
    """
    out: dict[str, dict[str, float]] = {}

    def put(attack: str, name: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out.setdefault(attack, {})[name] = number
        elif isinstance(value, list) and value and all(_number(v) is not None for v in value):
            out.setdefault(attack, {})[f"{name}_last"] = _number(value[-1])  # type: ignore[assignment]

    def walk_attacks(table: Mapping[str, Any]) -> None:
        for attack, metrics in table.items():
            if isinstance(metrics, Mapping):
                for name, value in metrics.items():
                    put(str(attack), str(name), value)

    for key, value in summary.items():
        if key == "attacks" and isinstance(value, Mapping):
            walk_attacks(value)
        elif key in attacks and isinstance(value, Mapping):
            walk_attacks({key: value})
        else:
            put("", str(key), value)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if not math.isnan(value) else math.nan


CELL_KINDS.register("membership")(MembershipKind())
