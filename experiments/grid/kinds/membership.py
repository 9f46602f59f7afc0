"""Membership-inference cells: one target model per cell, every listed attack against it.

Attacks and metrics come from ``attacks.membership`` (LOSS, LiRA of Carlini et al., S&P 2022,
RMIA of Zarifzadeh et al., ICML 2024); the defense (dropout, DP-SGD, and for a federated target
central DP) shapes the target's training. A cell with ``clients > 0`` in its options audits the
final global model of a Flower federation (``experiments.membership``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from defenses import DefenseConfig
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
        honoured = {"name", "dropout", "target_epsilon", "delta", "max_grad_norm", "clipping_norm"}
        default = DefenseConfig().to_dict()
        if unused := sorted(k for k, v in defense.to_dict().items() if k not in honoured and v != default[k]):
            raise ConfigError(
                f"{spec.where}: membership cells cannot apply defense setting {unused[0]!r} of the "
                f"{defense.name} table; they take {', '.join(sorted(honoured - {'name'}))}"
            )
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

            return run_federation_mia(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)
        from experiments.membership import run_mia

        return run_mia(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)


CELL_KINDS.register("membership")(MembershipKind())
