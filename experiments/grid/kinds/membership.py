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

from defenses.config import DEFENSE_SETTINGS
from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec
from experiments.membership.config import MEMBERSHIP_DEFENSE_SETTINGS, MEMBERSHIP_DEFENSES
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
    defenses = MEMBERSHIP_DEFENSES

    def schema(self) -> Schema:
        from experiments.membership.schema import membership_schema

        return membership_schema()

    def attack_names(self) -> list[str]:
        from attacks.membership import MEMBERSHIP_ATTACKS

        return MEMBERSHIP_ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        defense = spec.defense.to_dict()
        # the empirical epsilon's delta: an option where the defense has none (none, dropout)
        own_delta = {"delta"} - set(DEFENSE_SETTINGS.get(spec.defense.name, ()))
        if given := sorted(set(defense) & set(spec.options) - own_delta):
            raise ConfigError(
                f"{spec.where}.options sets defense setting {given[0]!r}: give it in a [defenses.NAME] table, "
                "so the cell's label says it"
            )
        return {  # a table holds the settings of its defense only (experiments.grid.cells)
            "dataset": spec.dataset,
            "model": spec.model,
            "attacks": spec.attacks,
            **{k: v for k, v in defense.items() if k in MEMBERSHIP_DEFENSE_SETTINGS},
            "seed": spec.seed,
        }

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
