"""A zero client update passes every clipping path unchanged; non-zero updates match Flower's own results
(fixed clipping, the client mods) or a hand computation of Andrew et al.'s adaptive clipping step."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg
from flwr.supercore.differential_privacy import KEY_NORM_BIT

from defenses import DefenseConfig, build_defense
from defenses.clipping import ClippingNorm
from defenses.dp_central import DP_WEIGHT_KEY, uniform_weight_mod
from defenses.ldp import ldp_noise_multiplier
from fl.seed import derive_seed

SHAPE = (50, 20)
WEIGHTS = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)  # the global model, not zero


def _fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1)


def _scaled(seed: int, norm: float) -> np.ndarray:
    update = np.random.default_rng(seed).normal(size=SHAPE)
    return (update * (norm / np.linalg.norm(update))).astype(np.float32)


def _aggregate(flower, grid, strategy, server_round: int, updates: list[np.ndarray]) -> np.ndarray:
    """One round of ``strategy`` on replies ``WEIGHTS + update`` (a zero update replies ``WEIGHTS`` itself)."""
    messages = strategy.configure_train(server_round, ArrayRecord([WEIGHTS.copy()]), ConfigRecord(), grid)
    replies = []
    for msg, update in zip(messages, updates, strict=True):
        app = lambda m, c, u=update: flower.reply(m, [WEIGHTS + u])  # noqa: E731
        replies.append(uniform_weight_mod(msg, flower.context(), app))
    arrays, _ = strategy.aggregate_train(server_round, replies)
    return arrays.to_numpy_ndarrays()[0]


def test_defenses_clipping_norm_divides_like_a_float_except_by_zero() -> None:
    bound = ClippingNorm(1.5)
    assert bound / 0.0 == math.inf and bound / 0 == math.inf
    assert type(bound / 0.7) is float and bound / 0.7 == 1.5 / 0.7
    assert min(1, bound / 0.0) == 1


@pytest.mark.parametrize("clipping", ["server-fixed", "adaptive"])
def test_defenses_server_clipping_keeps_a_zero_update(flower, grid, clipping: str) -> None:
    # negligible noise on the aggregate and on the clipped count, so the aggregate is the clipped mean
    cfg = DefenseConfig(name="dp-central", clipping=clipping, noise_multiplier=1e-9, clipped_count_stddev=1e-6)
    strategy = build_defense(cfg).wrap_strategy(_fedavg(), num_rounds=1, clients_per_round=3)
    updates = [np.zeros(SHAPE, np.float32), _scaled(1, 0.5), _scaled(2, 5.0)]  # clip 1.0: only the last is clipped
    aggregate = _aggregate(flower, grid, strategy, 1, updates)
    expected = WEIGHTS + (updates[1] + updates[2] / 5) / 3
    assert np.allclose(aggregate, expected, atol=1e-6)
    if clipping == "adaptive":  # two of three unclipped (the zero update counts as unclipped): b = 2/3 > 0.5
        assert strategy.clipping_norm == pytest.approx(math.exp(-0.2 * (2 / 3 - 0.5)), rel=1e-4)


def test_defenses_server_fixed_clipping_matches_flower_on_nonzero_updates(flower, grid) -> None:
    defense = build_defense(DefenseConfig(name="dp-central", clipping="server-fixed", noise_multiplier=0.1))
    ours = defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=3)
    inner = _fedavg()
    inner.weighted_by_key = DP_WEIGHT_KEY
    theirs = DifferentialPrivacyServerSideFixedClipping(inner, 0.1, 1.0, 3)
    for server_round in (1, 2):
        updates = [_scaled(10 * server_round + i, norm) for i, norm in enumerate((0.3, 0.9, 4.0))]
        mine = _aggregate(flower, grid, ours, server_round, updates)
        np.random.seed(derive_seed(0, "server-noise", server_round))  # our wrapper's own noise generator
        assert np.array_equal(mine, _aggregate(flower, grid, theirs, server_round, updates))


def test_defenses_server_adaptive_clipping_is_andrew_et_al_step_on_nonzero_updates(flower, grid) -> None:
    """Clip to C, average, add N(0, (z_D C / m)^2), then C <- C exp(-0.2 (b~ - 0.5)) with the noised unclipped fraction
    b~ (Andrew et al., Algorithm 1), both noises drawn in that order from the round's generator."""
    z, count_std = 0.1, 3 / 20  # Flower's default sigma_b = m / 20
    defense = build_defense(DefenseConfig(name="dp-central", clipping="adaptive", noise_multiplier=z))
    ours = defense.wrap_strategy(_fedavg(), num_rounds=2, clients_per_round=3)
    z_update = (z**-2 - (2 * count_std) ** -2) ** -0.5
    bound = 1.0
    for server_round in (1, 2):  # the second round clips at the adapted bound
        updates = [_scaled(10 * server_round + i, norm) for i, norm in enumerate((0.3, 0.9, 4.0))]
        mine = _aggregate(flower, grid, ours, server_round, updates)
        rng = np.random.RandomState(derive_seed(0, "server-noise", server_round))
        clipped = [u * min(1.0, bound / np.linalg.norm(u)) for u in updates]
        noise = rng.normal(0, z_update * bound / 3, SHAPE).astype(np.float32)
        assert np.allclose(mine, WEIGHTS + np.mean(clipped, axis=0) + noise, atol=1e-5)
        unclipped = sum(np.linalg.norm(u) <= bound for u in updates)
        assert unclipped == 2
        bound *= math.exp(-0.2 * (rng.normal(unclipped, count_std) / 3 - 0.5))
        assert ours.clipping_norm == pytest.approx(bound, rel=1e-9)
        assert bound < 1.0  # two of three unclipped: above the target quantile 0.5, so the bound shrinks


@pytest.mark.parametrize("clipping", ["client-fixed", "client-adaptive"])
def test_defenses_client_clipping_mod_keeps_a_zero_update(flower, clipping: str) -> None:
    mod = build_defense(DefenseConfig(name="dp-central", clipping=clipping)).client_mods()[0]
    reply = flower.run_mod(mod, [WEIGHTS], [WEIGHTS], clipping_norm=1.0)
    assert not reply.has_error()
    assert np.array_equal(reply.content.array_records["arrays"].to_numpy_ndarrays()[0], WEIGHTS)
    if clipping == "client-adaptive":
        assert reply.content.metric_records["metrics"][KEY_NORM_BIT] == 0


@pytest.mark.parametrize(
    ("clipping", "flower_mod"), [("client-fixed", fixedclipping_mod), ("client-adaptive", adaptiveclipping_mod)]
)
def test_defenses_client_clipping_mod_matches_flower_on_nonzero_updates(flower, clipping: str, flower_mod) -> None:
    mod = build_defense(DefenseConfig(name="dp-central", clipping=clipping)).client_mods()[0]
    for norm in (0.4, 3.0):  # below and above the bound
        returned = [WEIGHTS + _scaled(3, norm)]
        mine, theirs = (flower.run_mod(m, [WEIGHTS], returned, clipping_norm=1.0) for m in (mod, flower_mod))
        a, b = (r.content.array_records["arrays"].to_numpy_ndarrays()[0] for r in (mine, theirs))
        assert np.array_equal(a, b)
        assert dict(mine.content.metric_records["metrics"]) == dict(theirs.content.metric_records["metrics"])


def test_defenses_ldp_mod_noises_a_zero_update_without_clipping_it(flower) -> None:
    (mod,) = build_defense(DefenseConfig(name="ldp", clipping_norm=1.0, epsilon=2.0)).client_mods()
    np.random.seed(0)
    out = flower.run_mod(mod, [WEIGHTS], [WEIGHTS]).content.array_records["arrays"].to_numpy_ndarrays()[0]
    np.random.seed(0)
    std = 2.0 * ldp_noise_multiplier(epsilon=2.0, delta=1e-5, sensitivity=2.0, clipping_norm=1.0)  # sigma x 2C
    noise = np.random.normal(0, std, SHAPE).astype(np.float32)
    assert np.array_equal(out, WEIGHTS + noise)


def test_defenses_ldp_mod_matches_flower_on_nonzero_updates(flower) -> None:
    (mod,) = build_defense(DefenseConfig(name="ldp", clipping_norm=1.0, epsilon=2.0)).client_mods()
    theirs = LocalDpMod(1.0, 2.0, 2.0, 1e-5)  # sensitivity 2C: the default
    for norm in (0.4, 3.0):
        returned = [WEIGHTS + _scaled(4, norm)]
        outs = []
        for m in (mod, theirs):
            np.random.seed(5)
            outs.append(flower.run_mod(m, [WEIGHTS], returned).content.array_records["arrays"].to_numpy_ndarrays()[0])
        assert np.array_equal(*outs)
