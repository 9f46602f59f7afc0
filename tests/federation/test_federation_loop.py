"""The federation without Ray: the round loop, the curious capture and checkpoints (InlineGrid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fl.data import load_dataset
from fl.federation.capture import CaptureStore, CaptureWriter
from fl.federation.checkpoint import Checkpoint
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.inline import InlineGrid
from fl.federation.server import FederationServer, ServerSpec, sample_clients
from fl.federation.settings import ModelSpec, TrainSettings

DATA = load_dataset("sample")
SPEC = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 32, "depth": 2})


def initial_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in SPEC.build().state_dict().items()}


def federate(tmp_path, *, clients: int = 4, rounds: int = 2, settings: TrainSettings, defense=None, **kw):
    """Run a federation in-process; returns the finished server."""
    parts = tuple(np.array_split(np.arange(len(DATA)), clients))
    faults = kw.pop("faults", frozenset())
    client = ClientSpec(model=SPEC, dataset="sample", partitions=parts, faults=faults)
    spec = ServerSpec(model=SPEC, num_clients=clients, num_rounds=rounds, settings=settings, **kw)
    server = FederationServer(
        spec=spec, run_dir=tmp_path, initial_weights=initial_weights(), test_data=(DATA.images, DATA.labels),
        defense=defense, resume=kw.get("stop_after_round", 0) == 0 and (tmp_path / "checkpoint").exists(),
    )
    CaptureWriter(tmp_path, SPEC).write_partitions("sample", "train", list(parts))
    server.run(InlineGrid(make_client_app(client, defense), clients))
    return server


def true_gradient(images, labels) -> dict[str, torch.Tensor]:
    model = SPEC.build()
    model.load_state_dict(initial_weights())
    model.train()
    loss = nn.functional.cross_entropy(model(images), labels)
    names = [n for n, _ in model.named_parameters()]
    return dict(zip(names, torch.autograd.grad(loss, list(model.parameters())), strict=True))


def test_federation_one_client_full_batch_step_equals_centralized_sgd(tmp_path):
    lr = 0.1
    settings = TrainSettings(local_steps=1, batch_size=0, lr=lr)
    server = federate(tmp_path, clients=1, rounds=1, settings=settings, capture="all")
    grad = true_gradient(DATA.images, DATA.labels)
    expected = {k: initial_weights()[k] - lr * g for k, g in grad.items()}
    for k, w in expected.items():
        torch.testing.assert_close(server.result.weights[k], w, rtol=0, atol=1e-6)
    # The curious server recovers the client's exact gradient from the weight delta it captured.
    cap = CaptureStore(tmp_path).load(1, 0)
    for k, g in grad.items():
        torch.testing.assert_close(-cap.update[k] / lr, g, rtol=0, atol=1e-6)
    assert cap.num_examples == len(DATA)
    assert cap.settings == settings


def test_federation_capture_matches_client_and_truth_is_separate(tmp_path):
    settings = TrainSettings(local_steps=1, batch_size=4, lr=0.1)
    federate(tmp_path, clients=4, rounds=2, settings=settings, fraction=0.5, capture="attacked", attack_clients=1)
    store = CaptureStore(tmp_path)
    assert store.rounds() == [1, 2]
    for r in (1, 2):
        info = store.round_info(r)
        assert info["sampled"] == sample_clients(0, r, 4, 2)
        [client] = store.clients(r)
        assert client in info["sampled"] and info["captured"] == [client]
        idx = store.true_indices(r, client)
        assert len(idx) == 4 and set(idx) <= set(store.partition(client).tolist())
        grad = true_gradient(DATA.images[idx], DATA.labels[idx])
        cap = store.load(r, client)
        if r == 1:  # round 1 starts from the initial weights, so the gradient is checkable directly
            for k, g in grad.items():
                torch.testing.assert_close(-cap.update[k] / 0.1, g, rtol=0, atol=1e-6)
    assert not list((tmp_path / "capture").rglob("*.json*")) or all(
        "indices" not in p.read_text() for p in (tmp_path / "capture").rglob("*.json")
    )


def test_federation_resume_after_kill_matches_uninterrupted_run_and_survives_a_failing_client(tmp_path):
    settings = TrainSettings(local_epochs=1, batch_size=8, lr=0.1)
    faults = frozenset({(2, sample_clients(0, 2, 4, 2)[0])})
    full = federate(tmp_path / "full", rounds=3, settings=settings, fraction=0.5, faults=faults)
    federate(tmp_path / "cut", rounds=3, settings=settings, fraction=0.5, faults=faults, stop_after_round=1)
    assert Checkpoint.load(tmp_path / "cut").server_round == 1
    resumed = federate(tmp_path / "cut", rounds=3, settings=settings, fraction=0.5, faults=faults)
    assert resumed.result.server_round == 3
    for k, w in full.result.weights.items():
        assert torch.equal(resumed.result.weights[k], w), k
    assert [h["accuracy"] for h in resumed.result.history] == [h["accuracy"] for h in full.result.history]
    failed = {h["round"]: h["failed"] for h in full.result.history}
    assert failed == {1: [], 2: [next(iter(faults))[1]], 3: []}


def test_federation_bad_server_options_fail_with_one_clear_line():
    from fl.errors import ConfigError

    with pytest.raises(ConfigError, match="fraction"):
        ServerSpec(model=SPEC, num_clients=4, num_rounds=1, settings=TrainSettings(), fraction=1.5)
    with pytest.raises(ConfigError, match="attack-clients 3"):
        ServerSpec(model=SPEC, num_clients=4, num_rounds=1, settings=TrainSettings(), fraction=0.5, attack_clients=3)
