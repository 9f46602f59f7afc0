"""prune and quantize mods act on the outgoing update (reply - received), ldp clips and noises it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict

from defenses import DefenseConfig, LocalTraining, build_defense
from defenses.accounting import gaussian_epsilon
from defenses.ldp import RELEASES_KEY
from defenses.prune import kept_entries, topk_sparsify
from defenses.quantize import quantize
from fl.core.errors import ConfigError


def _arrays(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(20, 30)).astype(np.float32), rng.normal(size=7).astype(np.float32)]


def _delta(reply: Message, sent: list[np.ndarray]) -> list[np.ndarray]:
    got = next(iter(reply.content.array_records.values())).to_numpy_ndarrays()
    return [g - s for g, s in zip(got, sent, strict=True)]


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.9, 0.99])
def test_defenses_topk_keeps_exactly_k_largest_entries(ratio: float) -> None:
    delta = np.random.default_rng(0).normal(size=(40, 25))
    out = topk_sparsify(delta, ratio)
    k = kept_entries(delta.size, ratio)
    assert k == max(1, delta.size - int(np.floor(ratio * delta.size)))
    kept = np.flatnonzero(out)
    assert len(kept) == k
    assert np.array_equal(out.ravel()[kept], delta.ravel()[kept])
    assert np.abs(delta).ravel()[kept].min() >= np.abs(delta.ravel()[np.flatnonzero(out == 0)]).max(initial=0)


def test_defenses_prune_mod_sparsifies_the_update_not_the_weights(flower) -> None:
    mod = build_defense(DefenseConfig(name="prune", prune_ratio=0.9)).client_mods()[0]
    sent = _arrays(0)
    returned = [s + d for s, d in zip(sent, _arrays(1), strict=True)]
    reply = flower.run_mod(mod, sent, returned)
    for delta, full, s in zip(_delta(reply, sent), _arrays(1), sent, strict=True):
        assert np.count_nonzero(delta) == kept_entries(full.size, 0.9)
        nz = delta != 0
        assert np.allclose(delta[nz], full[nz], atol=1e-6)  # kept entries are the update's own
        assert np.count_nonzero(s) == s.size  # the weights themselves are dense: pruning did not zero them
    assert reply.content.metric_records["metrics"]["num-examples"] == 10


def test_defenses_update_mods_pass_other_messages_through(flower) -> None:
    for name in ("prune", "quantize", "ldp"):
        for mod in build_defense(DefenseConfig(name=name, sensitivity=2.0)).client_mods():
            query = Message(RecordDict(), dst_node_id=1, message_type=MessageType.QUERY)
            answer = mod(query, flower.context(), lambda m, c: Message(RecordDict(), reply_to=m))
            assert not answer.has_error()


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_defenses_quantize_error_bound(bits: int) -> None:
    delta = np.random.default_rng(bits).normal(size=5000).astype(np.float32)
    step = (delta.max() - delta.min()) / (2**bits - 1)
    nearest = quantize(delta, bits)
    assert np.abs(nearest - delta).max() <= step / 2 + 1e-6
    assert len(np.unique(nearest)) <= 2**bits
    uniform = np.random.default_rng(0).random(delta.shape)
    stochastic = quantize(delta, bits, uniform=uniform)
    assert np.abs(stochastic - delta).max() < step + 1e-6
    assert len(np.unique(stochastic)) <= 2**bits
    # unbiased: averaging many stochastic roundings recovers the update
    draws = np.mean([quantize(delta[:200], bits, uniform=np.random.default_rng(s).random(200)) for s in range(400)], 0)
    assert np.abs(draws - delta[:200]).max() < 0.25 * step


def test_defenses_quantize_mod_rounds_the_update(flower) -> None:
    mod = build_defense(DefenseConfig(name="quantize", quantize_bits=2, stochastic_rounding=False)).client_mods()[0]
    sent = _arrays(0)
    returned = [s + d for s, d in zip(sent, _arrays(1), strict=True)]
    for delta in _delta(flower.run_mod(mod, sent, returned), sent):
        assert len(np.unique(np.round(delta, 4))) <= 4


def test_defenses_ldp_mod_clips_and_noises_the_update(flower) -> None:
    # a large per-round epsilon keeps the noise small enough to see the clipping underneath
    defense = build_defense(DefenseConfig(name="ldp", clipping_norm=1.0, epsilon=50.0))
    (mod,) = defense.client_mods()
    sent = [np.zeros((100, 100), np.float32)]
    big = [np.full((100, 100), 5.0, np.float32)]  # update norm 500, far above the clip
    np.random.seed(0)
    out = _delta(flower.run_mod(mod, sent, big), sent)[0]
    std = 2.0 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 50.0  # sensitivity 2C by default
    clipped = 1.0 / 100  # every entry of the clipped update: 5 * (1 / 500)
    assert out.mean() == pytest.approx(clipped, abs=4 * std / 100)
    assert out.std() == pytest.approx(std, rel=0.05)
    np.random.seed(1)
    assert not np.allclose(_delta(flower.run_mod(mod, sent, big), sent)[0], out)  # fresh noise


def test_defenses_ldp_epsilon_composes_over_participations() -> None:
    defense = build_defense(DefenseConfig(name="ldp", epsilon=0.5))
    state: dict = {}
    training = LocalTraining(None, None, [], 1, 0)  # type: ignore[arg-type]
    first = defense.finish_local_training(training, client_state=state)
    second = defense.finish_local_training(training, client_state=state)
    assert state[RELEASES_KEY] == 2
    sigma = math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5  # std over the true sensitivity 2C
    assert first["noise_multiplier"] == pytest.approx(sigma) and second["releases"] == 2
    assert first["epsilon"] == pytest.approx(gaussian_epsilon(noise_multiplier=sigma, releases=1, delta=1e-5))
    assert first["epsilon"] < 0.5 < second["epsilon"] < 2 * 0.5  # tighter than adding per-round epsilons


@pytest.mark.parametrize(("sensitivity", "clip"), [(None, 1.0), (2.0, 1.0), (5.0, 0.5)])
def test_defenses_ldp_epsilon_is_the_rdp_accountant_on_the_true_sensitivity(sensitivity, clip) -> None:
    """Opacus' RDP accountant, called directly: noise std / (2C) for every release, no sampling."""
    from opacus.accountants import RDPAccountant

    defense = build_defense(DefenseConfig(name="ldp", epsilon=2.0, clipping_norm=clip, sensitivity=sensitivity))
    state: dict = {}
    training = LocalTraining(None, None, [], 1, 0)  # type: ignore[arg-type]
    for _ in range(3):
        metrics = defense.finish_local_training(training, client_state=state)
    std = (sensitivity or 2 * clip) * math.sqrt(2 * math.log(1.25 / 1e-5)) / 2.0  # what LocalDpMod adds
    acc = RDPAccountant()
    acc.history = [(std / (2 * clip), 1.0, 3)]
    assert metrics["epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5), abs=1e-6)
    assert metrics["noise_multiplier"] == pytest.approx(std / (2 * clip)) and metrics["releases"] == 3


def test_defenses_ldp_refuses_sensitivity_below_twice_the_clip() -> None:
    with pytest.raises(ConfigError, match=r"sensitivity=1\.5 is invalid; expected >= 2 x clipping_norm = 2\.0 "):
        build_defense(DefenseConfig(name="ldp", sensitivity=1.5, clipping_norm=1.0))
