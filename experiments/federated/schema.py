"""The federation's one schema: every setting of ``SimulationConfig``, its ``TrainSettings`` and its
``DefenseConfig``, flat and in order. ``fedleak simulate``'s options, the Flower App's run config
(``[tool.flwr.app.config]``) and the scenario keys of ``[[federated]]`` blocks come from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from defenses import DefenseConfig
from experiments.federated.config import SimulationConfig
from fl.core.schema import Schema, Setting, flat_settings, nested
from fl.federation.settings import TrainSettings

NESTED = {"train": TrainSettings, "defense": DefenseConfig}


@cache
def federation_schema() -> Schema:
    """The federation kind of run."""
    return Schema("federation", flat_settings(SimulationConfig, NESTED), nested(SimulationConfig, NESTED))


def federation_settings() -> tuple[Setting, ...]:
    """Every setting of a federation, the nested training and defense settings in their place."""
    return federation_schema().settings


def simulation_config(values: Mapping[str, Any], *, where: str = "", **fixed: Any) -> SimulationConfig:
    """A ``SimulationConfig`` from flat settings keyed by field name (``None``: the default).

    ``fixed``: ``SimulationConfig`` fields outside the schema (``client_secret``).
    """
    config: SimulationConfig = federation_schema().build(values, where=where, **fixed)
    return config
