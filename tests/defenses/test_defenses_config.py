"""DefenseConfig validation and the defense registry."""

from __future__ import annotations

import pytest

from defenses import DEFENSES, DefenseConfig, build_defense
from fl.core.errors import ConfigError
from fl.models import build_model, dropout_sites


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epsilon", 0.0),
        ("epsilon", -1.0),
        ("delta", 0.0),
        ("delta", 1.0),
        ("noise_multiplier", -0.1),
        ("target_epsilon", 0.0),
        ("target_epsilon", float("inf")),
        ("clipping", "bogus"),
        ("prune_ratio", 1.0),
        ("prune_ratio", -0.1),
        ("quantize_bits", 0),
        ("quantize_bits", 17),
        ("quantize_bits", 4.5),
        ("accountant", "gdp"),
        ("max_grad_norm", 0.0),
        ("clipping_norm", -1.0),
        ("dropout", 1.0),
        ("dropout_placement", "middle"),
        ("sensitivity", float("nan")),
        ("clipped_count_stddev", 0.0),
    ],
)
def test_defenses_config_rejects_bad_value_in_one_line(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        DefenseConfig(**{key: value})
    msg = str(err.value)
    assert "\n" not in msg
    assert key in msg and repr(value) in msg and "expected" in msg


def test_defenses_config_defaults_are_valid_and_roundtrip() -> None:
    cfg = DefenseConfig()
    assert cfg.name == "none"
    assert DefenseConfig.from_dict(cfg.to_dict()) == cfg


def test_defenses_config_unknown_key_lists_valid_options() -> None:
    with pytest.raises(ConfigError, match=r"unknown defense option 'noise'.*valid options: name, dropout"):
        DefenseConfig.from_dict({"name": "dp-local", "noise": 1.0})


def test_defenses_config_noise_and_target_epsilon_are_exclusive() -> None:
    with pytest.raises(ConfigError, match=r"noise_multiplier=1\.0 and target_epsilon=3\.0"):
        DefenseConfig(noise_multiplier=1.0, target_epsilon=3.0)
    assert DefenseConfig().sigma == 1.0
    assert DefenseConfig(noise_multiplier=0.5).sigma == 0.5


def test_defenses_registry_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_defense(DefenseConfig(name="tinfoil"))
    msg = str(err.value)
    assert "'tinfoil'" in msg
    for name in DEFENSES.names():
        assert name in msg


def test_defenses_none_is_a_no_op() -> None:
    defense = build_defense(DefenseConfig())
    assert defense.name == "none"
    assert defense.model_overrides() == {}
    assert defense.client_mods() == []
    strategy = object()
    assert defense.wrap_strategy(strategy, num_rounds=3, clients_per_round=2) is strategy


def test_defenses_dropout_overrides_build_a_model_with_dropout() -> None:
    defense = build_defense(DefenseConfig(name="dropout", dropout=0.4, dropout_placement="all"))
    overrides = defense.model_overrides()
    assert overrides == {"dropout": 0.4, "placement": "all"}
    model = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=8, **overrides)
    defense.check_model(model)
    sites = dict(dropout_sites(model))
    assert len(sites) > 1  # "all": one site per block, not only the head
    assert {m.p for m in sites.values()} == {0.4}


def test_defenses_dropout_refuses_zero_rate_and_models_without_dropout() -> None:
    with pytest.raises(ConfigError, match=r"dropout=0\.0"):
        build_defense(DefenseConfig(name="dropout", dropout=0.0))
    defense = build_defense(DefenseConfig(name="dropout"))
    with pytest.raises(ConfigError, match="needs a model with dropout"):
        defense.check_model(build_model("mlp", in_shape=(1, 8, 8), num_classes=10))
