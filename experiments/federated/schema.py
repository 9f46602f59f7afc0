"""The federation's one schema: every setting of ``SimulationConfig``, its ``TrainSettings`` and its
``DefenseConfig``, flat and in order. ``fedleak simulate``'s options, the Flower App's run config
(``[tool.flwr.app.config]``) and the scenario keys are generated from or checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from defenses import DefenseConfig
from experiments.federated.config import SimulationConfig
from fl.core.errors import ConfigError
from fl.core.schema import Setting, settings_of
from fl.federation.settings import TrainSettings

NESTED = {"train": TrainSettings, "defense": DefenseConfig}


@cache
def federation_settings() -> tuple[Setting, ...]:
    """Every setting of a federation, the nested training and defense settings in their place."""
    by_name = {s.name: s for s in settings_of(SimulationConfig)}
    out: list[Setting] = []
    for name in SimulationConfig.__dataclass_fields__:
        if name in NESTED:
            out += settings_of(NESTED[name])
        elif name in by_name:
            out.append(by_name[name])
    return tuple(out)


def simulation_config(values: Mapping[str, Any], **fixed: Any) -> SimulationConfig:
    """A ``SimulationConfig`` from flat settings keyed by field name (``None``: the default).

    ``fixed``: ``SimulationConfig`` fields outside the schema (``client_secret``).
    """
    parts: dict[type, dict[str, Any]] = {SimulationConfig: dict(fixed), TrainSettings: {}, DefenseConfig: {}}
    known = {s.name: s for s in federation_settings()}
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}; valid settings: {', '.join(known)}")
        if value is not None:
            parts[known[name].owner][name] = value
    sim = parts[SimulationConfig]
    return SimulationConfig(
        **sim, train=TrainSettings(**parts[TrainSettings]), defense=DefenseConfig.from_dict(parts[DefenseConfig])
    )
