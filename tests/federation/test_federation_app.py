"""The Flower App of pyproject.toml loads and runs (in-process grid), and the CLI refuses bad input."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from experiments.cli import cli
from experiments.federated.config import SimulationConfig
from experiments.flower.run_config import config_from_run_config
from fl.core.errors import ConfigError
from fl.federation.capture import CaptureStore
from fl.federation.checkpoint import Checkpoint
from fl.federation.inline_grid import InlineGrid

REPO = Path(__file__).resolve().parents[2]


def _load(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("defense", ["none", "secagg"])
def test_federation_flower_app_loads_from_pyproject_and_runs(tmp_path, defense):
    flwr_app = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    server_app = _load(flwr_app["components"]["serverapp"])
    client_app = _load(flwr_app["components"]["clientapp"])
    assert isinstance(server_app, ServerApp) and isinstance(client_app, ClientApp)
    run_config = {
        **flwr_app["config"],
        "dataset": "sample",
        "model": "mlp",
        "clients": 2,
        "rounds": 2,
        "local-steps": 1,
        "batch-size": 4,
        "capture": "attacked",
        "attack-clients": 1,
        "out": str(tmp_path),
        "defense": defense,
    }
    cfg = config_from_run_config(run_config)
    assert (cfg.clients, cfg.rounds, cfg.train.local_steps, cfg.defense.name) == (2, 2, 1, defense)
    grid = InlineGrid(client_app, 2)
    for ctx in grid.contexts.values():
        ctx.run_config = run_config
    server_app(grid, Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    assert Checkpoint.load(tmp_path).server_round == 2
    assert json.loads((tmp_path / "result.json").read_text())["rounds_done"] == 2
    assert CaptureStore(tmp_path).rounds() == [1, 2]
    assert (CaptureStore(tmp_path).clients(2) == ["aggregate"]) == (defense == "secagg")
    assert config_from_run_config(flwr_app["config"]) == SimulationConfig(attack_clients=1)  # the CLI's defaults
    assert (
        "federations" not in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]
    )  # flwr 1.42 would migrate them
    with pytest.raises(ConfigError, match="unknown run-config key 'epochs'"):
        config_from_run_config({"epochs": 3})
    # the clients kept their keys and accountants in Flower's per-run context state, not on the server's disk
    assert not (tmp_path / "clients").exists()
    assert all("fedleak-client" in ctx.state.config_records for ctx in grid.contexts.values())


def test_federation_run_config_refuses_the_clients_secret() -> None:
    for key in ("client-secret", "client-secret-file"):
        with pytest.raises(ConfigError, match=rf"run-config key '{key}' would show the clients' secret to the server"):
            config_from_run_config({key: "00112233445566778899aabbccddeeff"})


def test_federation_run_config_takes_model_and_attack_options_as_comma_lists() -> None:
    cfg = config_from_run_config(
        {
            "model-options": "bias=true, hidden=16",
            "attack": "dia",
            "attack-clients": 1,
            "attack-options": "layer_weights=balanced,mask_step_size=0.3",
        }
    )
    assert cfg.model_options == {"bias": True, "hidden": 16}
    assert cfg.attack_options == {"layer_weights": "balanced", "mask_step_size": 0.3}
    with pytest.raises(ConfigError, match="run-config key 'model-options': 'bias' is not KEY=VALUE"):
        config_from_run_config({"model-options": "bias"})
    assert config_from_run_config({"attack": "ig", "attack-clients": 1, "attack-rounds": "1,3"}).attack_rounds == (1, 3)
    with pytest.raises(
        ConfigError, match="run-config key 'attack-rounds': 'x' is not a comma-separated list of integers"
    ):
        config_from_run_config({"attack-rounds": "x"})
    with pytest.raises(
        ConfigError, match=r"mask_step_size applies to dia \(--mask-step-size\); the chosen attack is ig"
    ):
        config_from_run_config({"attack": "ig", "attack-clients": 1, "attack-options": "mask_step_size=0.3"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fraction", "1.5"], "fraction=1.5 is invalid; expected a value in (0, 1] (--fraction)"),
        (
            ["--clients", "4", "--fraction", "0.5", "--attack", "ig", "--attack-clients", "3"],
            "--attack-clients 3 exceeds",
        ),
        (["--defense", "dp-local", "--target-epsilon", "0"], "target_epsilon=0"),
        (["--defense", "nonsense"], "nonsense"),
        (["--attack-rounds", "1,x"], "--attack-rounds"),
        (["--client-examples", "-1"], "client_examples=-1 is invalid; expected a value >= 0"),
        (["--attack", "ig", "--attack-iters", "0"], "attack_iters=0 is invalid; expected a value >= 1"),
        (["--client-secret-file", "/nonexistent/secret"], "cannot read the client secret file '/nonexistent/secret'"),
        (
            ["--defense", "ldp", "--sensitivity", "1.0"],
            "sensitivity=1.0 is invalid; expected >= 2 x clipping_norm = 2.0",
        ),
        (["--defense", "dp-central", "--clipping", "adaptive", "--target-quantile", "1.0"], "target_quantile=1.0"),
    ],
)
def test_federation_cli_bad_input_is_one_line_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["simulate", "--dataset", "sample", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_federation_flower_app_bundle_carries_every_module_of_the_project() -> None:
    """The bundle (FAB) `flwr run` ships to a SuperLink and its SuperNodes holds every Python module
    of the packages the apps import; an ignore rule that drops one breaks the app on real hosts."""
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    names = set(zipfile.ZipFile(io.BytesIO(build_fab_from_disk(REPO))).namelist())
    modules = {
        p.relative_to(REPO).as_posix()
        for pkg in ("fl", "attacks", "defenses", "experiments")
        for p in (REPO / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert "fl/data/partition_file.py" in modules and "fl/data/load.py" in modules
    assert modules - names == set()
