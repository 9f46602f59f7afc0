"""Federated cells: a Flower simulation with a curious server attacking the captured updates.

All federated cells of a grid run in one long-lived process (``shared_engine``) so that
consecutive simulations reuse one Ray instance instead of paying the engine's start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec


class FederatedKind(CellKind):
    name = "federated"
    shared_engine = True
    budget_keys: Mapping[str, str] = {"rounds": "num_rounds", "clients": "num_clients",
                                      "local_epochs": "local_epochs", "attack_iterations": "attack_iters"}
    defenses = ("none", "dropout", "dp-local", "dp-central", "ldp", "prune", "quantize", "secagg")

    def config_type(self) -> type:
        from experiments.federated import SimulationConfig

        return SimulationConfig

    def attack_names(self) -> list[str]:
        from attacks.inversion import ATTACKS

        return ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        return {"dataset": spec.dataset, "model": spec.model, "attacks": spec.attacks, "defense": spec.defense,
                "seed": spec.seed}

    def run(self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path,
            progress: bool) -> Mapping[str, Any]:
        from experiments.federated import run_federation

        return run_federation(config, out_dir=out_dir, device=device, progress=progress, resume=True)


CELL_KINDS.register("federated")(FederatedKind())
