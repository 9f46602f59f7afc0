"""Test doubles for the grid runner: a small deterministic cell kind (tests only, never shipped)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CellKind, CellSpec
from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.core.schema import Schema, nested, setting, settings_of


@dataclass(frozen=True)
class ToyConfig:
    dataset: str = setting("toy", help="Dataset.")
    model: str = setting("toy", help="Model.")
    attacks: tuple[str, ...] = setting((), help="Attacks.")
    dropout: float = setting(0.0, help="The defense.")
    target_epsilon: float = setting(math.inf, help="The DP defense.")
    seed: int = setting(0, help="Seed.")
    iters: int = setting(10, help='Budget "iterations".')
    fail: bool = setting(False, help="Option: the cell raises a runtime error.")

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ConfigError(f"iters={self.iters} is invalid; expected >= 1")


class ToyKind(CellKind):
    """PSNR falls with dropout for 'ig' only; AUC falls with a smaller epsilon; accuracy costs both."""

    name = "toy"
    budget_keys: Mapping[str, str] = {"iterations": "iters"}
    defenses = ("none", "dropout", "dp-local")

    def __init__(self, interrupt_on_call: int = 0) -> None:
        self.calls = 0
        self.interrupt_on_call = interrupt_on_call

    def schema(self) -> Schema:
        return Schema("toy", settings_of(ToyConfig), nested(ToyConfig, {}))

    def attack_names(self) -> list[str]:
        return ["ig", "dia", "loss"]

    def config_values(self, spec: CellSpec) -> dict[str, Any]:
        values: dict[str, Any] = {
            "dataset": spec.dataset,
            "model": spec.model,
            "attacks": spec.attacks,
            "seed": spec.seed,
        }
        if spec.defense.name == "dropout":
            values["dropout"] = spec.defense.dropout
        if spec.defense.name == "dp-local" and spec.defense.target_epsilon is not None:
            values["target_epsilon"] = spec.defense.target_epsilon
        return values

    def run(
        self, config: Any, *, device: torch.device, data_root: Path | None, out_dir: Path, progress: bool
    ) -> ToyResult:
        self.calls += 1
        if self.interrupt_on_call and self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        if config.fail:
            raise RuntimeError("toy failure")
        eps_term = 0.0 if math.isinf(config.target_epsilon) else 1.0 / config.target_epsilon
        cell = {"test_accuracy": 0.9 - 0.2 * config.dropout - 0.1 * eps_term}
        if not math.isinf(config.target_epsilon):  # DP-SGD's epsilon protects one record
            cell.update(epsilon_record=config.target_epsilon, delta=1e-5)
        out = {"": cell}
        for attack in config.attacks:
            psnr = 30.0 - (20.0 * config.dropout if attack == "ig" else 0.0) + 0.5 * config.seed
            out[attack] = {"psnr_mean": psnr, "ssim_mean": psnr / 40.0, "auc": 0.9 - 0.3 * eps_term}
        (out_dir / "artifact.json").write_text(json.dumps({"calls": self.calls}))
        return ToyResult(out)


@dataclass(frozen=True)
class ToyResult:
    metrics: dict[str, dict[str, float]]

    def rows(self) -> dict[str, dict[str, float]]:
        return self.metrics

    def to_json(self) -> dict[str, Any]:
        return self.metrics


def toy_kinds(**kwargs: Any) -> Registry[CellKind]:
    """A registry holding only the toy kind."""
    kinds: Registry[CellKind] = Registry("cell kind")
    kinds.register("toy")(ToyKind(**kwargs))
    return kinds


TOY_SCENARIO = """
[scenario]
name = "toy"
seeds = [0, 1]

[defenses.dropout]
dropout = [0.25, 0.5]

[toy]
datasets = ["sample"]
models = ["mlp"]
attacks = ["ig", "dia"]
defenses = ["none", "dropout"]
budget = { iterations = 5 }
"""
