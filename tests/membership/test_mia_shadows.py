"""Shadow models: balanced IN/OUT assignment, path choice, and vectorized training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.membership.shadows import balanced_assignment, cache_key, choose_path, train_stacked
from attacks.membership.training import DPConfig, TrainConfig, accuracy
from fl.errors import ConfigError
from fl.models import build_model


def test_mia_assignment_puts_each_record_in_half_the_models() -> None:
    inside = balanced_assignment(8, 1000, seed=3)
    assert inside.shape == (8, 1000)
    assert (inside.sum(0) == 4).all()
    assert np.abs(inside.sum(1) - 500).max() < 60  # every model trains on about half the pool
    odd = balanced_assignment(3, 1000, seed=3).sum(0)
    assert set(np.unique(odd)) == {1, 2}
    one = balanced_assignment(1, 1000, seed=3)
    assert 400 < one.sum() < 600
    np.testing.assert_array_equal(
        balanced_assignment(8, 100, seed=5), balanced_assignment(8, 100, seed=5)
    )
    with pytest.raises(ConfigError, match="shadow models must be >= 1"):
        balanced_assignment(0, 10, seed=0)


def test_mia_path_choice_per_device() -> None:
    gn = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=4, norm="group")
    bn = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=4, norm="batch")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    mlp = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, hidden=8, depth=1)
    assert choose_path("auto", gn, cpu, None) == "loop"
    assert choose_path("auto", mlp, cpu, None) == "vmap"
    assert choose_path("auto", gn, cuda, None) == "vmap"
    assert choose_path("auto", bn, cuda, None) == "loop"
    assert choose_path("auto", gn, cuda, DPConfig()) == "loop"
    with pytest.raises(ConfigError, match="vmap cannot train DP-SGD"):
        choose_path("vmap", gn, cpu, DPConfig())
    with pytest.raises(ConfigError, match="valid choices: auto, vmap, loop"):
        choose_path("fast", gn, cpu, None)


def test_mia_cache_key_depends_on_config_and_data() -> None:
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    base = cache_key({"epochs": 1}, x, y)
    assert base == cache_key({"epochs": 1}, x.clone(), y.clone())
    assert base != cache_key({"epochs": 2}, x, y)
    assert base != cache_key({"epochs": 1}, x + 1, y)


def test_mia_cache_key_resolves_the_default_norm() -> None:
    """norm None means the model's default, so it shares shadows with that norm spelled out."""
    from attacks.membership.config import MIAConfig
    from attacks.membership.runner import _key_parts

    assert _key_parts(MIAConfig(model="mlp", norm=None)) == _key_parts(MIAConfig(model="mlp", norm="none"))
    assert _key_parts(MIAConfig(model="convnet", norm=None)) == _key_parts(MIAConfig(model="convnet", norm="batch"))
    assert _key_parts(MIAConfig(model="convnet", norm=None)) != _key_parts(MIAConfig(model="convnet", norm="none"))


def test_mia_vmap_training_fits_each_models_own_half() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (200,), generator=gen)
    inside = torch.from_numpy(balanced_assignment(2, 200, seed=1))
    models = []
    for s in range(2):
        torch.manual_seed(s)
        models.append(
            build_model("mlp", in_shape=(1, 8, 8), num_classes=4, hidden=64, depth=1, bias=True)
        )
    cfg = TrainConfig(epochs=40, batch_size=25, lr=0.01)
    train_stacked(models, x, y, inside, cfg, seed=0, device=torch.device("cpu"), progress=False)
    for m, row in zip(models, inside, strict=True):
        acc_in, acc_out = accuracy(m, x[row], y[row]), accuracy(m, x[~row], y[~row])
        assert acc_in > 0.95 and acc_out < 0.5, (
            acc_in,
            acc_out,
        )  # random labels: memorised, not learned
    assert not torch.equal(models[0][1].weight, models[1][1].weight)
