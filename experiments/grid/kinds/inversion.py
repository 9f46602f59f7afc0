"""Inversion cells: one victim set per cell, every listed attack against it (``attacks.inversion``).

The dropout defense is the model's dropout rate (Scheliga et al., "Dropout is NOT all you need
to prevent gradient leakage", AAAI 2023: the Dropout Inversion Attack); ``none`` is p = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec


class InversionKind(CellKind):
    name = "inversion"
    budget_keys: Mapping[str, str] = {"iterations": "iters", "images": "num_images", "restarts": "restarts"}
    defenses = ("none", "dropout")

    def config_type(self) -> type:
        from attacks.inversion import InversionConfig

        return InversionConfig

    def attack_names(self) -> list[str]:
        from attacks.inversion import ATTACKS

        return ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        dropout = spec.defense.dropout if spec.defense.name == "dropout" else 0.0
        return {"dataset": spec.dataset, "model": spec.model, "attacks": spec.attacks, "dropout": dropout,
                "seed": spec.seed}

    def run(self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path,
            progress: bool) -> Mapping[str, Any]:
        from attacks.inversion import run_inversion

        return run_inversion(config, device=device, data_root=data_root, out_dir=out_dir, progress=progress)


CELL_KINDS.register("inversion")(InversionKind())
