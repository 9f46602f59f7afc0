"""dp-central: Flower's DP strategy wrappers noise the aggregate, not the individual replies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message
from flwr.serverapp.strategy import (
    FedAvg,
    FedMedian,
)
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from defenses import DefenseConfig, build_defense
from defenses.accounting import gaussian_epsilon
from defenses.adaptive_clipping import ClientSideAdaptiveClipping, ServerSideAdaptiveClipping
from defenses.dp_central import (
    DP_WEIGHT_KEY,
    SeededClientSideFixedClipping,
    ZeroSafeServerSideFixedClipping,
    uniform_weight_mod,
)
from fl.core.errors import ConfigError
from fl.seed import derive_seed

SHAPE = (200, 100)


def _fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)


def _round(flower, grid, strategy, server_round: int, updates: list[np.ndarray]) -> tuple[np.ndarray, list[Message]]:
    """One round on hand-made replies (weights 0 + update, unequal num-examples); (aggregate, replies)."""
    messages = list(
        strategy.configure_train(server_round, ArrayRecord([np.zeros(SHAPE, np.float32)]), ConfigRecord(), grid)
    )
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
        ("adaptive", ServerSideAdaptiveClipping),
        ("client-adaptive", ClientSideAdaptiveClipping),
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
    _round(flower, grid, strategy, 1, _updates(3))  # three updates of norm ~0.14, all below the bound 1.0
    metrics = defense.server_metrics()
    assert metrics["releases"] == 1 and metrics["epsilon"] > 0
    # Andrew et al.'s step with the noised unclipped fraction: the bound shrinks towards the norms
    expected = _andrew_step(1.0, unclipped=3, m=3, count_std=3 / 20, server_round=1)  # Flower's default sigma_b
    assert metrics["clipping_norm"] == pytest.approx(expected, rel=1e-12) and expected < 1.0


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
    assert type(ok.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=4)) is ServerSideAdaptiveClipping


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


# --- adaptive clipping (Andrew et al., NeurIPS 2021, Algorithm 1) and the per-round release record ---

Z = 0.05  # noise multiplier of the convergence tests: small, so that a small count noise is allowed (z < 2 sigma_b)


def _scaled(seed: int, norm: float, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    update = np.random.default_rng(seed).normal(size=shape)
    return (update * (norm / np.linalg.norm(update))).astype(np.float32)


def _through(mods: list, msg: Message, ctxt, app) -> Message:
    """``app``'s reply to ``msg`` through the client ``mods`` (outermost first), as a ClientApp runs them."""
    call = app
    for mod in reversed(mods):
        call = lambda m, c, mod=mod, nxt=call: mod(m, c, nxt)  # noqa: E731
    return call(msg, ctxt)


def _train(flower, grid, defense, server_round: int, updates: list[np.ndarray], *, fail=(), drop=()):
    """One round with the defense's client mods; clients ``fail`` reply an error, ``drop`` do not reply.

    The global weights are zero, so a reply is its update. Returns (aggregate or None, replies).
    """
    zero = np.zeros(updates[0].shape, np.float32)
    messages = list(defense.strategy.configure_train(server_round, ArrayRecord([zero]), ConfigRecord(), grid))
    replies = []
    for i, (msg, update) in enumerate(zip(messages, updates, strict=True)):
        if i in fail:
            replies.append(Message(Error(code=0, reason="x"), reply_to=msg))
        elif i not in drop:
            app = lambda m, c, u=update: flower.reply(m, [u.copy()])  # noqa: E731
            replies.append(_through(defense.client_mods(), msg, flower.context(), app))
    arrays, _ = defense.strategy.aggregate_train(server_round, replies)
    return (None if arrays is None else arrays.to_numpy_ndarrays()[0]), replies


def _dp(clipping: str, clients: int, **options):
    defense = build_defense(DefenseConfig(name="dp-central", clipping=clipping, **options))
    defense.wrap_strategy(_fedavg(), num_rounds=10, clients_per_round=clients)
    return defense


def _andrew_step(
    bound: float,
    *,
    unclipped: int,
    m: int,
    count_std: float,
    server_round: int,
    seed: int = 0,
    shapes=(SHAPE,),
    gamma: float = 0.5,
    lr: float = 0.2,
) -> float:
    """Andrew et al.'s bound update by hand: C exp(-lr (b~ - gamma)), b~ = (unclipped + N(0, count_std^2)) / m, the
    count noise drawn from the round's generator right after the aggregate's noise (whose std does not change the
    draws)."""
    rng = np.random.RandomState(derive_seed(seed, "server-noise", server_round))
    for shape in shapes:
        rng.normal(0, 1.0, shape)
    return bound * math.exp(-lr * (rng.normal(unclipped, count_std) / m - gamma))


@pytest.mark.parametrize("clipping", ["adaptive", "client-adaptive"])
def test_defenses_dp_central_adaptive_bound_shrinks_to_equal_update_norms(flower, grid, clipping: str) -> None:
    # Flower 1.42 steps with the clipped fraction: from 1.0 its bound grows (2.6 after 10 rounds)
    defense = _dp(clipping, 3, noise_multiplier=Z, clipped_count_stddev=0.05, clipping_norm=1.0)
    bounds = []
    for r in range(1, 31):
        _train(flower, grid, defense, r, [_scaled(10 * r + i, 0.14, (20, 5)) for i in range(3)])
        bounds.append(defense.server_metrics()["clipping_norm"])
    assert all(b1 < b0 for b0, b1 in itertools.pairwise(bounds[:16]))  # every update unclipped: shrink
    assert all(b == pytest.approx(0.14, rel=0.1) for b in bounds[-8:])  # then oscillate around 0.14


@pytest.mark.parametrize("clipping", ["adaptive", "client-adaptive"])
@pytest.mark.parametrize(
    ("gamma", "start", "between"), [(0.5, 4.0, (1.0, 1.1)), (0.5, 0.1, (1.0, 1.1)), (0.8, 0.5, (1.6, 1.7))]
)
def test_defenses_dp_central_adaptive_bound_tracks_the_target_quantile_of_spread_norms(
    flower, grid, clipping: str, gamma: float, start: float, between: tuple[float, float]
) -> None:
    """20 clients with norms 0.1, 0.2, ..., 2.0: a fraction gamma of them is unclipped between the norms ``between``."""
    defense = _dp(
        clipping, 20, noise_multiplier=Z, clipped_count_stddev=0.05, clipping_norm=start, target_quantile=gamma
    )
    many = type(grid)(list(range(1, 21)))
    norms = np.linspace(0.1, 2.0, 20)
    bounds = []
    for r in range(1, 61):
        _train(flower, many, defense, r, [_scaled(100 * r + i, n, (20, 5)) for i, n in enumerate(norms)])
        bounds.append(defense.server_metrics()["clipping_norm"])
    lo, hi = between
    assert all(0.97 * lo <= b <= 1.03 * hi for b in bounds[-10:]), bounds[-10:]


@pytest.mark.parametrize("clipping", ["adaptive", "client-adaptive"])
def test_defenses_dp_central_adaptive_noise_is_z_update_times_the_bound_used(flower, grid, clipping: str) -> None:
    z, count_std = 0.5, 1.0  # clip_norm_lr 1.0: the bound shrinks ~40 % a round, far beyond the 3 % tolerance
    defense = _dp(clipping, 3, noise_multiplier=z, clipped_count_stddev=count_std, clipping_norm=1.0, clip_norm_lr=1.0)
    z_update = (z**-2 - (2 * count_std) ** -2) ** -0.5  # Andrew et al., Thm 1
    assert defense.strategy.update_noise_multiplier == pytest.approx(z_update)
    bound = 1.0
    for r in (1, 2):  # norms ~0.14: every update unclipped, so the bound shrinks after each round
        aggregate, replies = _train(flower, grid, defense, r, _updates(r))
        received = [next(iter(m.content.array_records.values())).to_numpy_ndarrays()[0] for m in replies]
        noise = aggregate - np.mean(received, axis=0)
        assert noise.std() == pytest.approx(z_update * bound / 3, rel=0.03)  # Flower: z_D x (the updated bound) / 3
        release = defense.last_release
        assert (
            release.released
            and release.clipping_norm == bound
            and release.noise_std == pytest.approx(z_update * bound / 3)
        )
        assert defense.strategy.clipping_norm < 0.8 * bound
        bound = defense.strategy.clipping_norm


def _incomplete(kind: str) -> dict:
    return {"fail": (1,)} if kind == "error" else {"drop": (1,)}


@pytest.mark.parametrize("clipping", ["server-fixed", "client-fixed", "adaptive", "client-adaptive"])
@pytest.mark.parametrize("kind", ["error", "missing"])
def test_defenses_dp_central_incomplete_round_releases_nothing(flower, grid, clipping: str, kind: str) -> None:
    defense = _dp(clipping, 3, noise_multiplier=0.5, clipped_count_stddev=1.0, clipping_norm=1.0)
    aggregate, _ = _train(flower, grid, defense, 1, _updates(1), **_incomplete(kind))
    assert aggregate is None
    metrics = defense.server_metrics()
    assert metrics["releases"] == 0 and metrics["epsilon"] == 0 and metrics["clipping_norm"] == 1.0
    why = "1 of 3 sampled clients failed" if kind == "error" else "2 of 3 sampled clients replied"
    assert defense.last_release.to_dict() == {
        "round": 1,
        "released": False,
        "noise_multiplier": 0.5,
        "clipping_norm": 1.0,
        "clients": 2,
        "sampled": 3,
        "noise_std": 0.0,
        "reason": f"{why}; accounted central DP releases only complete rounds",
        "update_noise_multiplier": 0.5 if "fixed" in clipping else (0.5**-2 - 2.0**-2) ** -0.5,
        "count_stddev": 0.0 if "fixed" in clipping else 1.0,
    }
    aggregate, _ = _train(flower, grid, defense, 2, _updates(2))  # the next complete round is released
    assert aggregate is not None and defense.server_metrics()["releases"] == 1
    release = defense.last_release
    assert (release.round, release.released, release.clients, release.reason) == (2, True, 3, "")


@pytest.mark.parametrize("clipping", ["server-fixed", "client-fixed", "adaptive", "client-adaptive"])
def test_defenses_dp_central_epsilon_equals_a_fresh_accountant_of_the_releases(flower, grid, clipping: str) -> None:
    z = 0.8
    defense = _dp(clipping, 3, noise_multiplier=z, clipped_count_stddev=1.0)
    releases = []
    for r in range(1, 6):
        _train(flower, grid, defense, r, _updates(r), **({"drop": (0,)} if r == 3 else {}))
        releases.append(defense.last_release)
    assert [x.released for x in releases] == [True, True, False, True, True]
    assert all(x.noise_multiplier == z and x.sampled == 3 for x in releases)
    fresh = RdpAccountant(
        PrivacyConfig(
            target_delta=1e-5,
            population_size=3,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    for x in releases:
        if x.released:
            fresh.compose(
                GaussianPrivacyEvent(noise_multiplier=x.noise_multiplier, sample_size=x.clients, population_size=3)
            )
    metrics = defense.server_metrics()
    assert metrics["releases"] == 4
    assert metrics["epsilon"] == pytest.approx(fresh.get_epsilon(1e-5), abs=1e-6)
    assert fresh.get_epsilon(1e-5) == pytest.approx(
        gaussian_epsilon(noise_multiplier=z, releases=4, delta=1e-5), rel=0.05
    )


@pytest.mark.parametrize(("key", "value"), [("target_quantile", 0.0), ("target_quantile", 1.0), ("clip_norm_lr", 0.0)])
def test_defenses_dp_central_adaptive_options_are_validated(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}={value!r} is invalid; expected a value"):
        DefenseConfig(name="dp-central", clipping="adaptive", **{key: value})
