"""Federated cells: a Flower simulation with a curious server attacking the captured updates.

All federated cells of a grid run in one long-lived process inside one
:func:`fl.federation.engine.ray_session` (``shared_engine``), so consecutive simulations reuse
one Ray instance instead of paying the engine's start-up per cell. The curious server runs
one attack per federation, so a federated block's ``attacks`` list is a grid axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec
from fl.core.errors import ConfigError
from fl.core.results import RunResult
from fl.core.schema import Schema


class FederatedKind(CellKind):
    name = "federated"
    shared_engine = True
    attacks_per_cell = False
    budget_keys: Mapping[str, str] = {
        "rounds": "rounds",
        "clients": "clients",
        "client_examples": "client_examples",
        "attack_iterations": "attack_iters",
        "attack_clients": "attack_clients",
    }
    defenses = ("none", "dropout", "dp-local", "dp-central", "ldp", "prune", "quantize", "secagg")

    def schema(self) -> Schema:
        from experiments.federated.schema import federation_schema

        return federation_schema()

    def attack_names(self) -> list[str]:
        from experiments.federated.config import SERVER_ATTACKS

        return list(SERVER_ATTACKS)

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        if "client_secret" in spec.options:  # the cell's folder is the server's run folder: no secret there
            raise ConfigError(
                f"{spec.where}: a scenario cannot give the clients' secret (client_secret); each "
                "federated cell's clients draw a fresh one, kept in the cell's clients/ folder"
            )
        defense = spec.defense.to_dict()
        if given := sorted(set(defense) & set(spec.options)):
            raise ConfigError(
                f"{spec.where}.options sets defense setting {given[0]!r}: give it in a [defenses.NAME] table, "
                "so the cell's label says it"
            )
        (attack,) = spec.attacks
        return {
            "dataset": spec.dataset,
            "model": spec.model,
            "attack": attack,
            **defense,
            "attack_clients": 0 if attack == "none" else 1,
            "seed": spec.seed,
        }

    def engine(self) -> AbstractContextManager[None]:
        from fl.federation.engine import ray_session

        return ray_session()

    def run(
        self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path, progress: bool
    ) -> RunResult:
        from experiments.federated import run_federation

        if data_root is not None and config.data_dir is None:
            config = dataclasses.replace(config, data_dir=str(data_root))
        return run_federation(config, out_dir=out_dir, device=device, progress=progress, resume=True)


CELL_KINDS.register("federated")(FederatedKind())
