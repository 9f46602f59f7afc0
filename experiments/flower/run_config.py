"""Run config (``[tool.flwr.app.config]`` / ``flwr run . --run-config``) -> ``SimulationConfig``.

Keys are the federation's settings (:mod:`experiments.federated.schema`) under the CLI's option
names (``local-steps``, ``noise-multiplier``, ...). The repeatable ``--model-option`` /
``--attack-option`` become ``model-options`` / ``attack-options``: one comma list of
``KEY=VALUE`` items (a run config holds no tables), e.g. ``"bias=true,hidden=16"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from experiments.federated.config import SimulationConfig
from experiments.federated.federation import Composition, compose
from experiments.federated.schema import federation_settings, simulation_config
from fl.core.errors import ConfigError
from fl.core.schema import Setting

CLIENT_ONLY_KEYS = {"client-secret", "client-secret-file"}  # the clients' secret: each SuperNode's node config
APP_KEYS = {"out", "device", "node-data"}  # the Flower App's own keys (not the federation's settings)


def run_config_keys() -> dict[str, Setting]:
    """The run-config key of every federation setting (the CLI's flag names without dashes)."""
    return {s.key: s for s in federation_settings() if s.app}


def config_from_run_config(run_config: Mapping[str, Any]) -> SimulationConfig:
    """The federation of a flat run config: one key per setting of the federation's schema."""
    settings = run_config_keys()
    values: dict[str, Any] = {}
    for key, value in run_config.items():
        if value == "" or key in APP_KEYS:  # TOML has no null: "" leaves the option unset
            continue
        if key in CLIENT_ONLY_KEYS:
            raise ConfigError(
                f"run-config key {key!r} would show the clients' secret to the server; give each SuperNode "
                f"a file in its node config instead: --node-config \"... client-secret-file='/path/to/secret'\""
            )
        if key not in settings:
            raise ConfigError(
                f"unknown run-config key {key!r}; valid keys: {', '.join(sorted({*settings, *APP_KEYS}))}"
            )
        s = settings[key]
        try:
            if s.kind in (dict, tuple) or (s.parse is not None and isinstance(value, str)):
                value = s.from_text(str(value))
        except ValueError as err:
            raise ConfigError(f"run-config key {key!r}: {err}") from None
        values[s.name] = value
    return simulation_config(values)


def app_out(run_config: Mapping[str, Any]) -> Path:
    """The run folder of a Flower App run (run-config key ``out``)."""
    return Path(str(run_config.get("out", "runs/flwr")))


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
    truth = None if node_data else app_out(run_config) / "truth"
    return compose(config_from_run_config(run_config), node_data=node_data, truth_dir=truth, side=side)
