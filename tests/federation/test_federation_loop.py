"""The federation without Ray (InlineGrid): round loop, curious capture, checkpoints, and what the
server sees under each DP flavour.

The DP defenses here are built from Flower's own components (``LocalDpMod``, ``fixedclipping_mod``,
the central-DP strategy wrappers) in the shape of ``defenses.base.Defense``, so the tests pin the
capture point of the federation itself: after client mods, before server-side clipping and noise.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
)
from torch import nn

from fl.data import load_dataset
from fl.federation.capture import CaptureStore, write_partitions
from fl.federation.checkpoint import Checkpoint
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec, sample_clients
from fl.federation.settings import ModelSpec, TrainSettings

DATA = load_dataset("sample")
SPEC = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 32, "depth": 2})


def initial_weights(seed: int = 0, spec: ModelSpec = SPEC) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in spec.build().state_dict().items()}


def federate(
    tmp_path, *, clients: int = 4, rounds: int = 2, settings: TrainSettings, defense=None, model: ModelSpec = SPEC, **kw
):
    """Run a federation in-process; returns the finished server."""
    parts = tuple(np.array_split(np.arange(len(DATA)), clients))
    faults = kw.pop("faults", frozenset())
    client = ClientSpec(
        model=model,
        dataset="sample",
        partitions=parts,
        truth_dir=str(tmp_path / "truth"),
        faults=faults,
        client_secret="00112233445566778899aabbccddeeff",
        client_dir=str(tmp_path / "clients"),
    )
    spec = ServerSpec(model=model, num_clients=clients, num_rounds=rounds, settings=settings, **kw)
    server = FederationServer(
        spec=spec,
        run_dir=tmp_path,
        initial_weights=initial_weights(spec=model),
        test_data=(DATA.images, DATA.labels),
        defense=defense,
        resume=kw.get("stop_after_round", 0) == 0 and (tmp_path / "checkpoint").exists(),
    )
    write_partitions(tmp_path / "truth", "sample", "train", list(parts))
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


DEEP = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 8, "depth": 4})  # keys sort as 1, 10, 13, 4, 7
DP_SETTINGS = TrainSettings(local_steps=1, batch_size=8, lr=0.1)


def _dp_central(clipping: str = "server-fixed"):
    from defenses import DefenseConfig, build_defense

    count_noise = {"clipped_count_stddev": 1.0} if clipping in ("adaptive", "client-adaptive") else {}
    return build_defense(
        DefenseConfig(name="dp-central", clipping=clipping, noise_multiplier=0.5, clipping_norm=1.0, **count_noise)
    )


@pytest.mark.parametrize("clipping", ["server-fixed", "adaptive", "client-adaptive"])
def test_federation_resume_under_central_dp_matches_uninterrupted_run(tmp_path, clipping):
    """Same noise, accountant and (adaptive) clipping bound after a resume; weights back in the model's key order
    (Flower's DP strategies pair arrays by position, a checkpoint loads its keys sorted)."""
    full_defense = _dp_central(clipping)
    full = federate(tmp_path / "full", rounds=3, settings=DP_SETTINGS, model=DEEP, defense=full_defense)
    federate(
        tmp_path / "cut", rounds=3, settings=DP_SETTINGS, model=DEEP, defense=_dp_central(clipping), stop_after_round=1
    )
    resumed_defense = _dp_central(clipping)
    resumed = federate(tmp_path / "cut", rounds=3, settings=DP_SETTINGS, model=DEEP, defense=resumed_defense)
    assert resumed.result.server_round == 3
    assert list(resumed.result.weights) == list(initial_weights(spec=DEEP))
    for k, w in full.result.weights.items():
        assert torch.equal(resumed.result.weights[k], w), k
    assert [h["epsilon"] for h in resumed.result.history] == [h["epsilon"] for h in full.result.history]
    assert resumed_defense.server_metrics() == full_defense.server_metrics()
    assert resumed_defense.last_release == full_defense.last_release and full_defense.last_release.released
    if clipping != "server-fixed":
        assert full_defense.server_metrics()["clipping_norm"] != 1.0  # the bound adapted, and was restored


def test_federation_central_dp_does_not_depend_on_global_rng_state(tmp_path):
    """Two runs with the same seed are identical, whatever Python's and NumPy's global RNGs hold: Flower
    orders the train messages with ``random``, and in-process clients reseed NumPy's global RNG."""
    weights = []
    for run, state in enumerate((1, 2)):
        random.seed(state)
        np.random.seed(state)
        server = federate(tmp_path / str(run), rounds=2, settings=DP_SETTINGS, model=DEEP, defense=_dp_central())
        weights.append(server.result.weights)
    for k, w in weights[0].items():
        assert torch.equal(weights[1][k], w), k


def test_federation_bad_server_options_fail_with_one_clear_line():
    from fl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fraction"):
        ServerSpec(model=SPEC, num_clients=4, num_rounds=1, settings=TrainSettings(), fraction=1.5)
    with pytest.raises(ConfigError, match="attack-clients 3"):
        ServerSpec(model=SPEC, num_clients=4, num_rounds=1, settings=TrainSettings(), fraction=0.5, attack_clients=3)


class FlowerDefense:
    """Duck-typed ``Defense`` composed of Flower mods and a strategy wrapper."""

    secure_aggregation = False

    def __init__(self, mods=(), wrap=None) -> None:
        self.mods, self.wrap = list(mods), wrap

    def client_mods(self):
        return self.mods

    def wrap_strategy(self, strategy, *, num_rounds, clients_per_round, seed=0):
        return self.wrap(strategy, clients_per_round) if self.wrap else strategy

    def prepare_local_training(self, training, *, client_state, seed):
        return training

    def finish_local_training(self, training, *, client_state):
        return {}

    def server_metrics(self):
        return {}


def _norm(update: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in update.values()))


def _run(tmp_path, name, defense=None):
    server = federate(
        tmp_path / name,
        clients=2,
        rounds=1,
        settings=TrainSettings(local_steps=2, batch_size=8, lr=0.5),
        capture="all",
        defense=defense,
    )
    store = CaptureStore(tmp_path / name)
    caps = [store.load(1, c) for c in (0, 1)]
    mean = {
        k: sum(c.update[k] * c.num_examples for c in caps) / sum(c.num_examples for c in caps) for k in caps[0].update
    }
    aggregate = {k: server.result.weights[k] - caps[0].weights_before[k] for k in mean}
    return caps, mean, aggregate


def test_federation_visibility_under_each_dp_flavour(tmp_path):
    clean, clean_mean, clean_agg = _run(tmp_path, "none")
    for k in clean_mean:  # undefended: the aggregate is exactly the mean of what the server captured
        torch.testing.assert_close(clean_agg[k], clean_mean[k], rtol=0, atol=1e-6)
    big = _norm(clean[0].update)
    clip = big / 4

    # Central DP, server-side clipping: individual updates arrive raw (not clipped, not noised);
    # clipping and noise act on the aggregate only.
    wrap = lambda s, n: DifferentialPrivacyServerSideFixedClipping(  # noqa: E731
        s, noise_multiplier=1.0, clipping_norm=clip, num_sampled_clients=n
    )
    caps, mean, agg = _run(tmp_path, "central-server", FlowerDefense(wrap=wrap))
    for cap, ref in zip(caps, clean, strict=True):
        for k in ref.update:
            torch.testing.assert_close(cap.update[k], ref.update[k], rtol=0, atol=1e-6)
    assert _norm({k: agg[k] - mean[k] for k in mean}) > 0.1 * clip  # the aggregate carries noise

    # Central DP, client-side clipping: updates arrive clipped to the norm but un-noised.
    wrap = lambda s, n: DifferentialPrivacyClientSideFixedClipping(  # noqa: E731
        s, noise_multiplier=1.0, clipping_norm=clip, num_sampled_clients=n
    )
    caps, mean, agg = _run(tmp_path, "central-client", FlowerDefense(mods=[fixedclipping_mod], wrap=wrap))
    for cap, ref in zip(caps, clean, strict=True):
        scale = min(1.0, clip / _norm(ref.update))
        for k in ref.update:
            torch.testing.assert_close(cap.update[k], ref.update[k] * scale, rtol=1e-4, atol=1e-6)
        assert _norm(cap.update) <= clip * (1 + 1e-5)
    assert _norm({k: agg[k] - mean[k] for k in mean}) > 0.1 * clip

    # Local DP: every update is clipped and noised on the client; the server only sees noise-covered
    # updates, and the aggregate is exactly their mean (no server-side noise).
    caps, mean, agg = _run(
        tmp_path, "local", FlowerDefense(mods=[LocalDpMod(clip, sensitivity=clip, epsilon=10.0, delta=1e-5)])
    )
    std = clip * math.sqrt(2 * math.log(1.25 / 1e-5)) / 10.0
    for cap, ref in zip(caps, clean, strict=True):
        scale = min(1.0, clip / _norm(ref.update))
        noise = torch.cat([(cap.update[k] - ref.update[k] * scale).flatten() for k in ref.update])
        assert abs(float(noise.std()) / std - 1) < 0.05
    for k in mean:
        torch.testing.assert_close(agg[k], mean[k], rtol=0, atol=1e-5)


def test_federation_dp_sgd_updates_arrive_noised(tmp_path):
    """Under dp-local (Opacus DP-SGD) the captured update carries the client's DP-SGD noise."""
    from defenses import DefenseConfig, build_defense

    sigma, clip, lr, batch = 10.0, 1.0, 0.5, 8
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=sigma, max_grad_norm=clip))
    federate(
        tmp_path,
        clients=2,
        rounds=1,
        settings=TrainSettings(local_steps=1, batch_size=batch, lr=lr),
        capture="all",
        defense=defense,
    )
    store = CaptureStore(tmp_path)
    expected = lr * sigma * clip / batch  # one step: noise N(0, (sigma C)^2) on the sum, / expected batch
    for c in (0, 1):
        update = torch.cat([v.flatten() for v in store.load(1, c).parameter_update.values()])
        # the clipped signal has norm <= lr * C * (batch / expected batch): negligible against the noise
        assert abs(float(update.std()) / expected - 1) < 0.05
