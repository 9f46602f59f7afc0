"""Run config (``[tool.flwr.app.config]`` / ``flwr run . --run-config``) -> ``SimulationConfig``.

Keys are the CLI's option names (``local-steps``, ``noise-multiplier``, ...); each goes to the
training settings, the defense config or the simulation config, whichever has the field. The
repeatable ``--model-option``/``--attack-option`` become ``model-options``/``attack-options``: one
comma list of ``KEY=VALUE`` items (a run config holds no tables), e.g. ``"bias=true,hidden=16"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from defenses import DefenseConfig
from experiments.federated.config import SimulationConfig
from experiments.federated.run import Composition, compose
from fl.core.errors import ConfigError
from fl.core.keyvalues import parse_key_values
from fl.federation.settings import TrainSettings

TRAIN_KEYS = {f.name for f in fields(TrainSettings)}
DEFENSE_KEYS = {f.name for f in fields(DefenseConfig)} - {"name"}
SIM_KEYS = {f.name for f in fields(SimulationConfig)} - {"train", "defense", "client_secret"}
CLIENT_ONLY_KEYS = {"client_secret", "client_secret_file"}  # the clients' secret: each SuperNode's node config
APP_KEYS = {"out", "device", "node_data"}  # the Flower App's own keys (not SimulationConfig's)
DICT_KEYS = {"model_options", "attack_options"}  # comma lists of KEY=VALUE in a run config


def config_from_run_config(run_config: Mapping[str, Any]) -> SimulationConfig:
    """Split the flat run config into the simulation, training and defense configs."""
    sim: dict[str, Any] = {}
    train: dict[str, Any] = {}
    defense: dict[str, Any] = {}
    for key, value in run_config.items():
        name = key.replace("-", "_")
        if value == "":  # TOML has no null: "" leaves the option unset
            continue
        if name in APP_KEYS:
            continue
        if name in CLIENT_ONLY_KEYS:
            raise ConfigError(
                f"run-config key {key!r} would show the clients' secret to the server; give each SuperNode "
                f"a file in its node config instead: --node-config \"... client-secret-file='/path/to/secret'\""
            )
        if name == "defense":
            defense["name"] = value
        elif name in TRAIN_KEYS:
            train[name] = value
        elif name in DEFENSE_KEYS:
            defense[name] = value
        elif name in SIM_KEYS:
            sim[name] = value
        else:
            valid = sorted(k.replace("_", "-") for k in TRAIN_KEYS | DEFENSE_KEYS | SIM_KEYS | APP_KEYS | {"defense"})
            raise ConfigError(f"unknown run-config key {key!r}; valid keys: {', '.join(valid)}")
    for name in DICT_KEYS & set(sim):
        try:
            sim[name] = parse_key_values(item.strip() for item in str(sim[name]).split(",") if item.strip())
        except ValueError as err:
            raise ConfigError(f"run-config key {name.replace('_', '-')!r}: {err}") from None
    if "attack_rounds" in sim:
        sim["attack_rounds"] = tuple(int(r) for r in str(sim["attack_rounds"]).split(",") if r)
    return SimulationConfig(train=TrainSettings(**train), defense=DefenseConfig.from_dict(defense), **sim)


@lru_cache(maxsize=4)
def composition(items: tuple[tuple[str, Any], ...], side: str = "both") -> Composition:
    """The federation of a run config, built once per process (clients share it across rounds).

    ``node-data = true``: each SuperNode reads its own ``data-file`` and records what it trained on
    under its own ``truth-dir`` (both node config), and no process loads the training split;
    ``side="client"`` skips the server's test set. Otherwise (one machine) the clients record it
    under ``out/truth``, unless their node config names a ``truth-dir``.
    """
    run_config = dict(items)
    node_data = bool(run_config.get("node-data", False))
    truth = None if node_data else Path(str(run_config.get("out", "runs/flwr"))) / "truth"
    return compose(config_from_run_config(run_config), node_data=node_data, truth_dir=truth, side=side)
