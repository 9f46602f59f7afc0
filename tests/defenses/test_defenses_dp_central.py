"""dp-central: Flower's DP strategy wrappers noise the aggregate, not the individual replies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp.strategy import (
    FedAvg,
    FedMedian,
)

from defenses import DefenseConfig, build_defense
from defenses.accounting import gaussian_epsilon
from defenses.dp_central import (
    DP_WEIGHT_KEY,
    AccountedClientSideAdaptiveClipping,
    AccountedServerSideAdaptiveClipping,
    SeededClientSideFixedClipping,
    ZeroSafeServerSideFixedClipping,
    uniform_weight_mod,
)
from fl.errors import ConfigError

SHAPE = (200, 100)


def _fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)


def _round(flower, grid, strategy, server_round: int, updates: list[np.ndarray]) -> tuple[np.ndarray, list[Message]]:
    """One round on hand-made replies (weights 0 + update, unequal num-examples); (aggregate, replies)."""
    messages = list(strategy.configure_train(server_round, ArrayRecord([np.zeros(SHAPE, np.float32)]), ConfigRecord(), grid))
    replies = []
    for msg, update, n in zip(messages, updates, (10, 50, 90), strict=True):
        app = lambda m, c, u=update, n=n: flower.reply(m, [u.copy()], num_examples=n)  # noqa: E731
        replies.append(uniform_weight_mod(msg, flower.context(), app))
    arrays, _ = strategy.aggregate_train(server_round, replies)
    return arrays.to_numpy_ndarrays()[0], replies


def _updates(seed: int, scale: float = 1e-3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(scale * rng.normal(size=SHAPE)).astype(np.float32) for _ in range(3)]


@pytest.mark.parametrize(
    ("clipping", "wrapper"),
    [
        ("server-fixed", ZeroSafeServerSideFixedClipping),
        ("client-fixed", SeededClientSideFixedClipping),
        ("adaptive", AccountedServerSideAdaptiveClipping),
        ("client-adaptive", AccountedClientSideAdaptiveClipping),
    ],
)
def test_defenses_dp_central_wraps_fedavg_in_flower_dp_strategy(clipping: str, wrapper: type) -> None:
    defense = build_defense(DefenseConfig(name="dp-central", clipping=clipping, noise_multiplier=0.5))
    strategy = defense.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=20)
    assert type(strategy) is wrapper
    assert strategy.strategy.weighted_by_key == DP_WEIGHT_KEY
    names = [getattr(m, "__name__", "") for m in defense.client_mods()]
    assert ("fixedclipping_mod" in names) == (clipping == "client-fixed")
    assert ("adaptiveclipping_mod" in names) == (clipping == "client-adaptive")


def test_defenses_dp_central_noises_the_aggregate_only(flower, grid) -> None:
    sigma, clip = 1.0, 1.0
    defense = build_defense(DefenseConfig(name="dp-central", noise_multiplier=sigma, clipping_norm=clip))
    strategy = defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=3)
    updates = _updates(0)
    updates[2] = updates[2] * (5 * clip / np.linalg.norm(updates[2]))  # one update above the clip
    aggregate, replies = _round(flower, grid, strategy, 1, updates)
    received = [next(iter(r.content.array_records.values())).to_numpy_ndarrays()[0] for r in replies]
    # individual replies: the first two untouched, the big one scaled down to the clip, none noised
    assert np.array_equal(received[0], updates[0]) and np.array_equal(received[1], updates[1])
    assert np.linalg.norm(received[2]) == pytest.approx(clip, rel=1e-5)
    assert np.allclose(received[2], updates[2] / 5, atol=1e-7)
    # aggregate: the uniform mean (not num-examples weighted) plus N(0, (sigma * clip / n)^2)
    noise = aggregate - np.mean(received, axis=0)
    assert noise.std() == pytest.approx(sigma * clip / 3, rel=0.03)
    assert abs(noise.mean()) < 0.01


def test_defenses_dp_central_epsilon_accumulates_and_restores(flower, grid) -> None:
    cfg = DefenseConfig(name="dp-central", noise_multiplier=2.0)
    defense = build_defense(cfg)
    strategy = defense.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=3)
    assert defense.server_metrics()["epsilon"] == 0.0
    _round(flower, grid, strategy, 1, _updates(1))
    first = defense.server_metrics()
    state = defense.state_dict()
    _round(flower, grid, strategy, 2, _updates(2))
    second = defense.server_metrics()
    assert 0 < first["epsilon"] < second["epsilon"]
    assert first["releases"] == 1 and second["releases"] == 2
    assert second["epsilon"] == pytest.approx(gaussian_epsilon(noise_multiplier=2.0, releases=2, delta=1e-5), rel=0.05)
    resumed = build_defense(cfg)
    resumed.load_state_dict(state)  # the federation restores before wrapping
    resumed.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=3)
    assert resumed.server_metrics()["epsilon"] == pytest.approx(first["epsilon"])


def test_defenses_dp_central_adaptive_accounts_each_release(flower, grid) -> None:
    defense = build_defense(DefenseConfig(name="dp-central", clipping="adaptive", noise_multiplier=0.05))
    strategy = defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=3)
    _round(flower, grid, strategy, 1, _updates(3))
    metrics = defense.server_metrics()
    assert metrics["releases"] == 1 and metrics["epsilon"] > 0
    assert metrics["clipping_norm"] != 1.0  # the bound adapted to the update norms


@pytest.mark.parametrize("clipping", ["server-fixed", "adaptive"])
def test_defenses_dp_central_noise_depends_on_seed_and_round_only(flower, grid, clipping: str) -> None:
    def aggregate(seed: int, server_round: int) -> np.ndarray:
        defense = build_defense(DefenseConfig(name="dp-central", clipping=clipping, noise_multiplier=0.05))
        strategy = defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=3, seed=seed)
        np.random.seed(server_round + 100 * seed)  # global state that must not matter
        return _round(flower, grid, strategy, server_round, _updates(3))[0]

    assert np.array_equal(aggregate(7, 1), aggregate(7, 1))
    assert not np.array_equal(aggregate(7, 1), aggregate(8, 1))
    assert not np.array_equal(aggregate(7, 1), aggregate(7, 2))


def test_defenses_dp_central_adaptive_bound_survives_a_resume(flower, grid) -> None:
    cfg = DefenseConfig(name="dp-central", clipping="adaptive", noise_multiplier=0.05)
    defense = build_defense(cfg)
    _round(flower, grid, defense.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=3), 1, _updates(3))
    resumed = build_defense(cfg)
    resumed.load_state_dict(defense.state_dict())
    resumed.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=3)
    assert resumed.server_metrics() == defense.server_metrics()
    assert resumed.server_metrics()["clipping_norm"] != 1.0


def test_defenses_dp_central_adaptive_names_the_count_noise_it_needs() -> None:
    defense = build_defense(DefenseConfig(name="dp-central", clipping="adaptive", noise_multiplier=1.0))
    with pytest.raises(ConfigError, match=r"clipped_count_stddev > 0\.5 \(now 0\.2\)"):
        defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=4)
    ok = build_defense(
        DefenseConfig(name="dp-central", clipping="adaptive", noise_multiplier=1.0, clipped_count_stddev=1.0)
    )
    assert type(ok.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=4)) is AccountedServerSideAdaptiveClipping


def test_defenses_dp_central_target_epsilon_plans_noise_for_all_rounds(flower, grid) -> None:
    defense = build_defense(DefenseConfig(name="dp-central", target_epsilon=8.0))
    strategy = defense.wrap_strategy(_fedavg(), num_rounds=3, clients_per_round=3)
    for r in (1, 2, 3):
        _round(flower, grid, strategy, r, _updates(r))
    assert defense.server_metrics()["epsilon"] == pytest.approx(8.0, abs=0.3)


def test_defenses_dp_central_refuses_non_fedavg_strategies() -> None:
    defense = build_defense(DefenseConfig(name="dp-central"))
    with pytest.raises(ConfigError, match=r"FedAvg\.aggregate_train \(fedavg, fedprox\), got FedMedian"):
        defense.wrap_strategy(FedMedian(), num_rounds=1, clients_per_round=3)
