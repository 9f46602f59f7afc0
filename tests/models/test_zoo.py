"""Model zoo: shapes, dropout semantics, Opacus compatibility, registry errors."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from fl.core.errors import ConfigError
from fl.models import (
    MODELS,
    build_model,
    dropout_sites,
    has_dropout,
    record_masks,
    recorded_masks,
    set_masks,
)

SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", MODELS.names())
def test_forward_backward_every_model_every_shape(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, in_shape=shape, num_classes=10, dropout=0.25)
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODELS.names())
def test_dropout_active_in_train_inactive_in_eval(name: str) -> None:
    model = build_model(name, in_shape=(3, 32, 32), num_classes=10, dropout=0.5, norm="group")
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_no_dropout_model_is_deterministic_in_train_mode() -> None:
    model = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, dropout=0.0)
    x = torch.rand(2, 3, 32, 32)
    assert not has_dropout(model)
    assert torch.equal(model(x), model(x))


def test_recorded_mask_replays_the_training_forward() -> None:
    model = build_model("vit", in_shape=(3, 32, 32), num_classes=10, dropout=0.25)
    assert len(list(dropout_sites(model))) == 17
    x = torch.rand(2, 3, 32, 32)
    record_masks(model)
    y_train = model(x)
    masks = recorded_masks(model)
    keep = torch.cat([m.flatten() for m in masks.values()]).mean().item()
    assert abs(keep - 0.75) < 0.02
    model.eval()
    set_masks(model, masks)
    torch.testing.assert_close(model(x), y_train)
    set_masks(model, None)
    assert not torch.allclose(model(x), y_train)


@pytest.mark.parametrize("name", MODELS.names())
def test_dp_ready_variant_passes_opacus_validator(name: str) -> None:
    model = build_model(name, in_shape=(3, 32, 32), num_classes=10, dropout=0.25, norm="group")
    assert ModuleValidator.validate(model, strict=False) == []


def test_batchnorm_variant_is_flagged_by_opacus() -> None:
    model = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, norm="batch")
    assert ModuleValidator.validate(model, strict=False)


@pytest.mark.parametrize("name", ["mlp", "lenet", "vit"])
def test_batchnorm_is_refused_by_models_without_normalisation(name: str) -> None:
    with pytest.raises(ConfigError, match=f"model {name} has no normalisation layers"):
        build_model(name, in_shape=(3, 32, 32), num_classes=10, norm="batch")


def test_same_seed_same_initial_weights() -> None:
    torch.manual_seed(7)
    a = build_model("convnet", in_shape=(1, 28, 28), num_classes=10, width=8)
    torch.manual_seed(7)
    b = build_model("convnet", in_shape=(1, 28, 28), num_classes=10, width=8)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "alexnet"}, "valid choices: convnet, lenet, mlp, 2nn, resnet18, vit"),
        ({"name": "mlp", "dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"name": "mlp", "dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"name": "convnet", "norm": "layer"}, "valid choices: batch, group, none"),
        ({"name": "mlp", "widht": 3}, "valid options: hidden, depth, bias, activation, init, norm"),
    ],
)
def test_bad_model_arguments_fail_clearly(kwargs: dict, match: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ConfigError, match=match):
        build_model(name, in_shape=(3, 32, 32), num_classes=10, **kwargs)
