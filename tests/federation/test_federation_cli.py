"""``fedleak simulate`` / ``fedleak attack``: refusals come before Ray starts; one real Ray run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import ray
from click.testing import CliRunner

from experiments.cli import cli
from fl.data import load_dataset
from fl.federation.capture import AGGREGATE, CaptureStore, write_partitions
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec, TrainSettings

SGD_ONLY = "the inversion attacks support plain SGD clients only (--optimizer sgd, momentum 0, --strategy fedavg)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "convnet", "--norm", "batch", "--defense", "dp-local"],
            "BatchNorm mixes samples in a batch; build the model with --norm group",
        ),
        (["--clients", "1", "--defense", "secagg"], "--defense secagg needs >= 2 clients per round"),
        (["--optimizer", "adam", "--attack", "ig"], f"{SGD_ONLY}; this run uses --optimizer adam"),
        (["--strategy", "fedprox", "--proximal-mu", "0.1", "--attack", "dia"], "--strategy fedprox --proximal-mu 0.1"),
    ],
)
def test_federation_cli_refuses_before_ray_starts(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["simulate", "--dataset", "sample", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not ray.is_initialized()


def test_federation_attack_cli_refuses_an_adam_run_in_one_line(tmp_path):
    data = load_dataset("sample")
    spec = ModelSpec("mlp", data.shape, data.num_classes, options={"hidden": 16, "depth": 1})
    parts = tuple(np.array_split(np.arange(len(data)), 2))
    settings = TrainSettings(local_steps=1, batch_size=4, lr=0.01, optimizer="adam")
    server = FederationServer(
        spec=ServerSpec(model=spec, num_clients=2, num_rounds=1, settings=settings, capture="all"),
        run_dir=tmp_path,
        initial_weights=spec.build().state_dict(),
        test_data=(data.images, data.labels),
    )
    write_partitions(tmp_path / "truth", "sample", "train", list(parts))
    server.run(
        InlineGrid(
            make_client_app(
                ClientSpec(model=spec, dataset="sample", partitions=parts, truth_dir=str(tmp_path / "truth"))
            ),
            2,
        )
    )
    result = CliRunner().invoke(cli, ["attack", str(tmp_path), "--attack", "ig", "--round", "1", "--client", "0"])
    assert result.exit_code == 2, result.output
    assert f"{SGD_ONLY}; this run uses --optimizer adam" in result.output
    assert [line for line in result.output.splitlines() if "SGD" in line] == [
        f"Error: {SGD_ONLY}; this run uses --optimizer adam"
    ]


@pytest.mark.slow
def test_federation_ray_simulation_with_secagg_from_the_cli(tmp_path):
    """A real ``run_simulation`` (Ray, node discovery) under SecAgg+, driven like a user would."""
    out = tmp_path / "run"
    args = [
        "-q",
        "simulate",
        "--dataset",
        "sample",
        "--clients",
        "3",
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--batch-size",
        "4",
        "--lr",
        "0.1",
        "--defense",
        "secagg",
        "--capture",
        "all",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "secagg: final accuracy" in result.output
    store = CaptureStore(out)
    assert store.clients(1) == [AGGREGATE]
    cap = store.load(1, AGGREGATE)
    assert cap.num_clients == 3 and cap.num_examples == len(load_dataset("sample"))
    assert sorted(store.round_info(1)["sampled"]) == [0, 1, 2]
    history = json.loads((out / "result.json").read_text())["history"]
    assert history[0]["failed"] == [] and not ray.is_initialized()


def test_federation_failed_attack_is_recorded_and_the_round_goes_on(tmp_path, monkeypatch):
    import experiments.federated.attacking as attacking
    from experiments.federated import SimulationConfig
    from experiments.federated.federation import _attack_hook

    data = load_dataset("sample")
    spec = ModelSpec("mlp", data.shape, data.num_classes, options={"hidden": 16, "depth": 1})
    parts = tuple(np.array_split(np.arange(len(data)), 2))
    server = FederationServer(
        spec=ServerSpec(
            model=spec, num_clients=2, num_rounds=1, settings=TrainSettings(local_steps=1, batch_size=4), capture="all"
        ),
        run_dir=tmp_path,
        initial_weights=spec.build().state_dict(),
        test_data=(data.images, data.labels),
    )
    server.run(
        InlineGrid(
            make_client_app(
                ClientSpec(model=spec, dataset="sample", partitions=parts, truth_dir=str(tmp_path / "truth"))
            ),
            2,
        )
    )

    def diverged(*args, **kwargs):
        raise RuntimeError("repeats can not be negative")

    monkeypatch.setattr(attacking, "attack_captured", diverged)
    cfg = SimulationConfig(dataset="sample", clients=2, rounds=1, attack="ig", attack_clients=1)
    extra = _attack_hook(cfg, tmp_path, data.images, "cpu")({"round": 1, "attacked": [0]}, {})
    assert extra == {"attack": "ig", "attack_error": "RuntimeError: repeats can not be negative"}
