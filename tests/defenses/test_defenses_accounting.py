"""Privacy accounting against published figures (Abadi et al. 2016's MNIST setting, Opacus 1.6's accountants)."""

from __future__ import annotations

import math

import pytest

from defenses.accounting import (
    accountant_from_history,
    epsilon_from_history,
    gaussian_epsilon,
    history_of,
    noise_for_epsilon,
)
from fl.core.errors import ConfigError

MNIST_DPSGD = [(1.1, 256 / 60000, 14062)]  # Abadi et al.'s MNIST setting: 60 epochs of batch 256


def test_defenses_rdp_accountant_matches_reference() -> None:
    assert epsilon_from_history(MNIST_DPSGD, delta=1e-5, accountant="rdp") == pytest.approx(2.60, abs=0.01)


def test_defenses_prv_accountant_matches_reference() -> None:
    assert epsilon_from_history(MNIST_DPSGD, delta=1e-5, accountant="prv") == pytest.approx(2.39, abs=0.01)


def test_defenses_history_roundtrips_and_composes() -> None:
    acc = accountant_from_history(MNIST_DPSGD)
    assert history_of(acc) == [(1.1, 256 / 60000, 14062)]
    half = epsilon_from_history([(1.1, 256 / 60000, 7031)], delta=1e-5)
    both = epsilon_from_history([(1.1, 256 / 60000, 7031)] * 2, delta=1e-5)
    assert half < both == pytest.approx(epsilon_from_history(MNIST_DPSGD, delta=1e-5))
    assert epsilon_from_history([], delta=1e-5) == 0.0


def test_defenses_noise_for_epsilon_inverts_the_accountant() -> None:
    sigma = noise_for_epsilon(target_epsilon=2.6, delta=1e-5, sample_rate=256 / 60000, steps=14062)
    assert sigma == pytest.approx(1.1, abs=0.02)
    with pytest.raises(ConfigError, match="steps=0"):
        noise_for_epsilon(target_epsilon=1.0, delta=1e-5, sample_rate=0.1, steps=0)


def test_defenses_gaussian_epsilon_shrinks_with_noise_and_grows_with_releases() -> None:
    one = gaussian_epsilon(noise_multiplier=4.0, releases=1, delta=1e-5)
    assert gaussian_epsilon(noise_multiplier=8.0, releases=1, delta=1e-5) < one
    assert one < gaussian_epsilon(noise_multiplier=4.0, releases=10, delta=1e-5)
    assert gaussian_epsilon(noise_multiplier=4.0, releases=0, delta=1e-5) == 0.0


def test_defenses_unknown_accountant_lists_choices() -> None:
    with pytest.raises(ConfigError, match="unknown accountant 'gdp'; valid choices: rdp, prv"):
        accountant_from_history([], accountant="gdp")


def test_epsilon_is_infinite_once_a_step_ran_without_noise() -> None:
    """Opacus' RDP accountant says inf for sigma 0; the PRV one overflows: both accountants say inf."""
    from opacus.accountants import RDPAccountant

    history = [(1.0, 0.01, 100), (0.0, 0.01, 1)]
    reference = RDPAccountant()
    reference.history = list(history)
    assert reference.get_epsilon(delta=1e-5) == math.inf
    for accountant in ("rdp", "prv"):
        assert epsilon_from_history(history, delta=1e-5, accountant=accountant) == math.inf
