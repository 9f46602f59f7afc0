"""The federation's one schema: every setting of ``SimulationConfig``, its ``TrainSettings`` and its
``DefenseConfig``, flat and in order, then the curious server's attack settings (``tv_weight``, ...,
gathered into ``attack_options``). ``fedleak simulate``'s options, the Flower App's run config
(``[tool.flwr.app.config]``, which takes the attack settings as ``attack-options``) and the scenario
keys of ``[[federated]]`` blocks come from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from attacks.inversion.base import attack_settings, gather_attack_options
from defenses import DefenseConfig
from experiments.federated.config import SERVER_ATTACKS, SimulationConfig
from fl.core.schema import Schema, Setting, flat_settings, nested
from fl.federation.settings import TrainSettings

NESTED = {"train": TrainSettings, "defense": DefenseConfig}
CURIOUS_ATTACKS = tuple(a for a in SERVER_ATTACKS if a != "none")  # the server's inversions (no oracle)


@cache
def federation_schema() -> Schema:
    """The federation kind of run."""
    own = flat_settings(SimulationConfig, NESTED)
    names = {s.name for s in own}
    attack = tuple(replace(s, app=False) for s in attack_settings(CURIOUS_ATTACKS) if s.name not in names)
    return Schema("federation", own + attack, _assemble)


def _assemble(values: dict[type, dict[str, Any]], fixed: dict[str, Any]) -> SimulationConfig:
    parts = {cls: values.pop(cls, {}) for cls in (SimulationConfig, *NESTED.values())}
    sim = parts[SimulationConfig]
    if values or "attack_options" in sim:  # what is left: the attack's own settings
        sim["attack_options"] = gather_attack_options(sim.get("attack_options", {}), values.values())
    config: SimulationConfig = nested(SimulationConfig, NESTED)(parts, fixed)
    return config


def federation_settings() -> tuple[Setting, ...]:
    """Every setting of a federation, the nested training and defense settings in their place."""
    return federation_schema().settings


def simulation_config(values: Mapping[str, Any], *, where: str = "", **fixed: Any) -> SimulationConfig:
    """A ``SimulationConfig`` from flat settings keyed by field name (``None``: the default).

    ``fixed``: ``SimulationConfig`` fields outside the schema (``client_secret``).
    """
    config: SimulationConfig = federation_schema().build(values, where=where, **fixed)
    return config
