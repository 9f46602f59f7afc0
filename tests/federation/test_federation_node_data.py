"""Data on the nodes, truth on the clients' side: what crosses the wire is the update alone.

The Flower App runs in process (``node-data=true``): every node reads its own partition file, the
server never loads the training split, and no reply carries what a client trained on; the
clients record it on their own side.
"""

from __future__ import annotations

import copy
import importlib
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from flwr.app import Context, RecordDict

import experiments.federated.federation as federation_module
from experiments.cli import cli
from experiments.flower.run_config import composition
from fl.core.errors import DataError
from fl.data import load_dataset
from fl.data.partition_file import load_partition_file
from fl.federation.capture import CaptureStore
from fl.federation.inline_grid import InlineGrid

REPO = Path(__file__).resolve().parents[2]


class RecordingGrid(InlineGrid):
    """An in-process grid that keeps every reply as the server received it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.replies = []

    def send_and_receive(self, messages, *, timeout=None):
        got = list(super().send_and_receive(messages, timeout=timeout))
        self.replies += copy.deepcopy(got)  # as received: the server strips its own keys afterwards
        return got


def export(tmp_path: Path, clients: int = 2) -> Path:
    nodes = tmp_path / "nodes"
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--dataset",
            "sample",
            "--clients",
            str(clients),
            "--client-examples",
            "8",
            "--export-partitions",
            "--out",
            str(nodes),
        ],
    )
    assert res.exit_code == 0, res.output
    return nodes


def test_export_partitions_writes_each_clients_records_and_refuses_another_nodes_file(tmp_path):
    nodes = export(tmp_path, clients=2)
    train = load_dataset("sample", split="train")
    store = CaptureStore.__new__(CaptureStore)  # the truth side only
    store.truth = nodes / "truth"
    seen = []
    for client in (0, 1):
        images, labels, indices = load_partition_file(
            nodes / f"client_{client:04d}.npz", dataset="sample", client=client
        )
        assert len(indices) == 8 and np.array_equal(indices.numpy(), store.partition(client))
        assert torch.equal(images, train.images[indices]) and torch.equal(labels, train.labels[indices])  # exact pixels
        seen += indices.tolist()
    assert len(set(seen)) == 16  # disjoint partitions
    with pytest.raises(DataError, match="holds client 1 of 'sample', but this node is client 0 of a 'sample' run"):
        load_partition_file(nodes / "client_0001.npz", dataset="sample", client=0)
    with pytest.raises(DataError, match="does not exist"):
        load_partition_file(nodes / "client_0009.npz", dataset="sample", client=9)


def test_node_data_run_server_loads_no_training_split_and_no_reply_carries_truth(tmp_path, monkeypatch):
    nodes = export(tmp_path)
    real_load = federation_module.load_dataset

    def no_training_split(name, split, **kw):
        assert split != "train", "a node-data run loaded the training split"
        return real_load(name, split=split, **kw)

    monkeypatch.setattr(federation_module, "load_dataset", no_training_split)
    composition.cache_clear()
    flwr_app = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    server_app = importlib.import_module("experiments.flower.server_app").app
    client_app = importlib.import_module("experiments.flower.client_app").app
    out = tmp_path / "run"
    run_config = {
        **flwr_app["config"],
        "dataset": "sample",
        "clients": 2,
        "rounds": 2,
        "client-examples": 8,
        "local-steps": 1,
        "batch-size": 4,
        "capture": "all",
        "node-data": True,
        "out": str(out),
    }
    grid = RecordingGrid(client_app, 2)
    for ctx in grid.contexts.values():
        client = ctx.node_config["partition-id"]
        ctx.run_config = run_config
        ctx.node_config = {
            **ctx.node_config,
            "data-file": str(nodes / f"client_{client:04d}.npz"),
            "truth-dir": str(tmp_path / f"node{client}-truth"),
        }
    try:
        server_app(grid, Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=run_config))
    finally:
        composition.cache_clear()
    store = CaptureStore(out)
    assert store.rounds() == [1, 2] and store.clients(2) == [0, 1]
    train_replies = [r for r in grid.replies if "arrays" in r.content]
    assert len(train_replies) == 4
    for reply in train_replies:
        assert set(reply.content) == {"arrays", "metrics", "fedleak"}, set(reply.content)
        assert not {k for k in reply.content["metrics"] if "truth" in k or "indices" in k}
        assert set(reply.content["fedleak"]) == {"partition-id"}
    assert not (out / "truth").exists()  # the server recorded no truth
    for client in (0, 1):  # each client did, on its own side, and it is its own records
        store.truth = tmp_path / f"node{client}-truth"
        _, _, held = load_partition_file(nodes / f"client_{client:04d}.npz", dataset="sample", client=client)
        assert set(store.true_indices(1, client)) <= set(held.tolist()) and len(store.true_indices(1, client)) == 4


def test_node_data_refuses_the_per_round_attack_in_one_line(tmp_path):
    from experiments.federated.config import SimulationConfig
    from fl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="the server does not hold"):
        federation_module.compose(
            SimulationConfig(dataset="sample", clients=2, attack="ig", attack_clients=1), node_data=True
        )


def test_recorded_masks_stay_on_the_clients_side(tmp_path):
    """Clients that record their dropout masks for the oracle keep them under their truth dir: the
    replies carry the same three records as without, and the server's side holds no mask."""
    from fl.federation.client import ClientSpec, make_client_app
    from fl.federation.server import FederationServer, ServerSpec
    from fl.federation.settings import ModelSpec, TrainSettings

    data = load_dataset("sample", split="train")
    spec = ModelSpec("mlp", data.shape, data.num_classes, dropout=0.25, options={"hidden": 16})
    parts = (np.arange(0, 8), np.arange(8, 16))
    client = ClientSpec(
        model=spec,
        dataset="sample",
        partitions=parts,
        truth_dir=str(tmp_path / "client-truth"),
        record_masks=True,
        client_secret="ab" * 16,
    )
    server = FederationServer(
        spec=ServerSpec(
            model=spec,
            num_clients=2,
            num_rounds=1,
            settings=TrainSettings(local_steps=2, batch_size=4, lr=0.1),
            capture="all",
        ),
        run_dir=tmp_path / "server",
        initial_weights=spec.build().state_dict(),
        test_data=(data.images, data.labels),
    )
    grid = RecordingGrid(make_client_app(client), 2)
    server.run(grid)
    assert all(set(r.content) == {"arrays", "metrics", "fedleak"} for r in grid.replies if "arrays" in r.content)
    assert all(not any("mask" in k for k in r.content["arrays"]) for r in grid.replies if "arrays" in r.content)
    assert not [p for p in (tmp_path / "server").rglob("*mask*")]
    masks = sorted(p.name for p in (tmp_path / "client-truth").rglob("*.masks.safetensors"))
    assert masks == ["client_0000.masks.safetensors", "client_0001.masks.safetensors"]
