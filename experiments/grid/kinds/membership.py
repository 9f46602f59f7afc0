"""Membership-inference cells: one target model per cell, every listed attack against it.

Attacks and metrics come from ``attacks.membership`` (LOSS, LiRA of Carlini et al., S&P 2022,
RMIA of Zarifzadeh et al., ICML 2024); the defense (dropout, DP-SGD) shapes the target's training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec
from fl.errors import ConfigError, DataError


class MembershipKind(CellKind):
    name = "membership"
    budget_keys: Mapping[str, str] = {"shadow_models": "shadows", "epochs": "epochs", "pool": "pool_size",
                                      "population": "population_size", "bootstrap": "bootstrap"}
    defenses = ("none", "dropout", "dp-local")

    def config_type(self) -> type:
        from attacks.membership import MIAConfig

        return MIAConfig

    def attack_names(self) -> list[str]:
        from attacks.membership import ATTACKS

        return ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        defense = spec.defense
        values: dict[str, Any] = {"dataset": spec.dataset, "model": spec.model, "attacks": spec.attacks,
                                  "defense": defense.name, "seed": spec.seed}
        if defense.name == "dropout":
            values["dropout"] = defense.dropout
        if defense.name == "dp-local":
            if defense.target_epsilon is None:
                raise ConfigError(f"{spec.where}: membership cells train DP-SGD to a target_epsilon; set it in"
                                  " the dp-local defense table")
            values.update(epsilon=defense.target_epsilon, delta=defense.delta,
                          max_grad_norm=defense.max_grad_norm)
        return values

    def metrics(self, summary: Mapping[str, Any], attacks: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """The flattened summary; the target's DP-SGD epsilon protects one record: ``epsilon_record``."""
        out = super().metrics(summary, attacks)
        if "epsilon" in out.get("", {}):
            out[""]["epsilon_record"] = out[""].pop("epsilon")
        return out

    def check_data(self, config: Any, data_root: str | None) -> None:
        from attacks.membership.runner import check_pool_fits, dataset_records

        try:
            records = dataset_records(config.dataset, data_root)
        except DataError:
            return
        check_pool_fits(config, records)

    def run(self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path,
            progress: bool) -> Mapping[str, Any]:
        from attacks.membership import run_mia

        return run_mia(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)


CELL_KINDS.register("membership")(MembershipKind())
