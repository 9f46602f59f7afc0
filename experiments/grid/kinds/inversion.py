"""Inversion cells: one victim set per cell, every listed attack against it (``attacks.inversion``).

The dropout defense is the model's dropout rate (Scheliga et al., "Dropout is NOT all you need
to prevent gradient leakage", AAAI 2023: the Dropout Inversion Attack); ``none`` is p = 0.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CELL_KINDS, CellKind, CellSpec
from fl.core.errors import ConfigError, DataError
from fl.core.results import RunResult
from fl.core.schema import Schema


class InversionKind(CellKind):
    name = "inversion"
    budget_keys: Mapping[str, str] = {"iterations": "iters", "images": "indices", "restarts": "restarts"}
    defenses = ("none", "dropout")
    # attacks that optimise or are given dropout masks: at p = 0 they are IG, so the cell skips them
    needs_dropout = ("dia", "oracle")

    def schema(self) -> Schema:
        from experiments.inversion.config import inversion_schema

        return inversion_schema()

    def attack_names(self) -> list[str]:
        from attacks.inversion import ATTACKS

        return ATTACKS.names()

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        dropout = spec.defense.dropout if spec.defense.name == "dropout" else 0.0
        attacks = spec.attacks if dropout > 0 else tuple(a for a in spec.attacks if a not in self.needs_dropout)
        if not attacks:
            raise ConfigError(
                f"{spec.where}: attacks {', '.join(spec.attacks)} need dropout > 0; add 'ig' for the undefended cells"
            )
        return {"dataset": spec.dataset, "model": spec.model, "attacks": attacks, "dropout": dropout, "seed": spec.seed}

    def budget_value(self, key: str, value: Any, where: str) -> Any:
        if key == "images":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}.budget.images = {value!r} is invalid; expected an integer >= 1")
            return tuple(range(value))
        return value

    def check_data(self, config: Any, data_root: str | None) -> None:
        from experiments.inversion.laboratory import check_indices

        try:
            size = _split_size(config.dataset, config.split, data_root)
        except DataError:
            return
        check_indices(config, size)

    def run(
        self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path, progress: bool
    ) -> RunResult:
        from experiments.inversion.laboratory import run_inversion

        return run_inversion(
            config, device=device, data_root=data_root, out_dir=out_dir, progress=progress, resume=True
        )


CELL_KINDS.register("inversion")(InversionKind())


@functools.lru_cache(maxsize=8)
def _split_size(dataset: str, split: str, data_root: str | None) -> int:
    from fl.data import load_dataset

    return len(load_dataset(dataset, split=split, root=data_root).labels)
