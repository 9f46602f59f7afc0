"""Mask readout: the masks a one-example gradient reveals through its exact zeros."""

from __future__ import annotations

import logging

import pytest
import torch

from attacks.inversion import attack_config, invert_many
from attacks.inversion.readout import find_readouts, read_masks
from fl.core.errors import ConfigError


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("mlp", None, [("3.mask", "4.weight", "columns"), ("6.mask", "7.weight", "columns")]),
        (
            "mlp",
            {"hidden": 64, "depth": 2, "bias": True},
            [("3.mask", "1.bias", "additive"), ("6.mask", "4.bias", "additive")],
        ),
        (
            "vit",
            {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 32},
            [("embed_drop.mask", "embed.pos_embed", "additive")],
        ),
    ],
)
def test_readout_finds_the_exposing_parameter_and_reads_the_true_masks(
    cifar, make_obs, model, options, expected
) -> None:
    for i in range(3):
        obs = make_obs(cifar.images[i : i + 1], cifar.labels[i : i + 1], model=model, options=options, client_seed=i)
        found = find_readouts(obs)
        assert [(r.site, r.param, r.rule) for r in found] == expected
        read = read_masks(obs, found)
        for site, mask in read.items():
            assert mask.shape == obs.true_masks[site].shape
            assert torch.equal(mask, obs.true_masks[site])  # every entry, not most of them


def test_readout_refuses_updates_that_mix_examples_or_steps(cifar, make_obs) -> None:
    x, y = cifar.images[:2], cifar.labels[:2]
    with pytest.raises(ConfigError, match=r"needs one-example gradient updates .* got a gradient of batch_size 2"):
        find_readouts(make_obs(x, y))
    with pytest.raises(ConfigError, match="got a delta of batch_size 1 and local_steps 1"):
        find_readouts(make_obs(x[:1], y[:1], kind="delta"))


def test_dia_with_every_mask_read_is_the_oracle(make_obs) -> None:
    """On the MLP every site is readable, so DIA with readout learns no mask and is IG with the
    client's masks: the same reconstruction as the oracle, bit for bit."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    obs = [make_obs(x[i : i + 1], torch.tensor([i + 2]), client_seed=i, dtype=torch.float64) for i in range(2)]
    oracle = invert_many(obs, "oracle", config=attack_config("oracle", iters=6, tv_weight=1e-5, recipe="dia"))
    read = invert_many(obs, "dia", config=attack_config("dia", iters=6, mask_readout=True))
    for a, b in zip(oracle, read, strict=True):
        assert b.masks is None or not b.masks
        assert torch.equal(a.inputs, b.inputs) and a.grad_loss == b.grad_loss
    plain = invert_many(obs, "dia", config=attack_config("dia", iters=6))
    assert not torch.equal(plain[0].inputs, read[0].inputs)


def test_dia_readout_on_the_vit_learns_only_the_unread_sites(cifar, make_obs, caplog) -> None:
    options = {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 32}
    obs = make_obs(cifar.images[:1], cifar.labels[:1], model="vit", options=options)
    with caplog.at_level(logging.INFO, logger="fedleak.invert"):
        (result,) = invert_many([obs], "dia", config=attack_config("dia", iters=2, mask_readout=True))
    assert set(result.masks) == set(obs.true_masks) - {"embed_drop.mask"}
    assert "mask readout: 1 of 5 dropout sites read from the update (embed_drop <- embed.pos_embed)" in caplog.text


def test_dia_readout_refuses_what_it_cannot_read(cifar, make_obs) -> None:
    x, y = cifar.images[:2], cifar.labels[:2]
    conv = {"width": 4, "norm": "group", "placement": "all"}  # dropout only after convolutions: summed over positions
    obs = make_obs(x[:1], y[:1], model="convnet", options=conv)
    assert find_readouts(obs) == []
    with pytest.raises(ConfigError, match="no dropout site of model 'convnet' can be read from its update"):
        invert_many([obs], "dia", config=attack_config("dia", iters=2, mask_readout=True))
    head = make_obs(x[:1], y[:1], model="convnet", options={**conv, "placement": "head"})
    found = find_readouts(head)
    assert [r.site for r in found] == ["drop.mask"]
    read, true = read_masks(head, found)["drop.mask"], head.true_masks["drop.mask"]
    assert torch.all(read <= true)  # after a ReLU a dead unit reads 0 whatever its mask; a 1 is never wrong
    with pytest.raises(ConfigError, match=r"mask_readout \(--mask-readout\) needs one-example gradient updates"):
        invert_many([make_obs(x, y)], "dia", config=attack_config("dia", iters=2, mask_readout=True))
