"""Metric functions are exact on hand-made score sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attacks.membership.metrics import (
    bound_check,
    clopper_pearson,
    dp_tpr_bound,
    empirical_epsilon,
    evaluate,
    point_metrics,
    roc_curve,
)
from attacks.membership.plots import plot_roc_settings

SCORES = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
MEMBERS = np.array([1, 1, 0, 0, 1], dtype=bool)


def test_mia_roc_groups_ties_and_counts_exactly() -> None:
    fpr, tpr, thr = roc_curve(SCORES, MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.3, 0.1])


def test_mia_point_metrics_match_hand_computation() -> None:
    m = point_metrics(SCORES, MEMBERS, fprs=(0.001, 0.5))
    # Mann-Whitney: pairs (member > non-member) = 3, ties = 1 -> (3 + 0.5) / 6
    assert m["auc"] == pytest.approx(3.5 / 6)
    assert m["tpr@0.1%"] == pytest.approx(1 / 3)
    assert m["tpr@50%"] == pytest.approx(2 / 3)
    # best threshold 0.9: (TPR + 1 - FPR) / 2 = (1/3 + 1) / 2
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)


def test_mia_perfect_and_uninformative_scores() -> None:
    members = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = point_metrics(np.r_[np.ones(50), np.zeros(50)], members)
    assert (
        perfect["auc"] == 1.0 and perfect["tpr@0.1%"] == 1.0 and perfect["balanced_accuracy"] == 1.0
    )
    tied = point_metrics(np.zeros(100), members)
    assert tied["auc"] == 0.5 and tied["tpr@1%"] == 0.0 and tied["balanced_accuracy"] == 0.5
    inverted = point_metrics(np.r_[np.zeros(50), np.ones(50)], members)
    assert inverted["auc"] == 0.0


def test_mia_dp_bound_formula() -> None:
    np.testing.assert_allclose(dp_tpr_bound(np.array([0.0, 0.3, 1.0]), 0.0, 0.0), [0.0, 0.3, 1.0])
    # eps = ln 2, delta = 0, fpr = 0.1: min(1, 0.2, 1 - 0.9 / 2) = 0.2
    assert float(dp_tpr_bound(0.1, math.log(2), 0.0)) == pytest.approx(0.2)
    # fpr = 0.7: min(1, 1.4, 1 - 0.3 / 2) = 0.85
    assert float(dp_tpr_bound(0.7, math.log(2), 0.0)) == pytest.approx(0.85)


def test_mia_clopper_pearson_closed_forms() -> None:
    low, high = clopper_pearson(np.array([0, 10]), 10)
    assert low[0] == 0.0 and high[1] == 1.0
    assert high[0] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert low[1] == pytest.approx(0.025 ** (1 / 10))


def test_mia_empirical_epsilon_of_a_perfect_attack() -> None:
    members = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    eps = empirical_epsilon(np.r_[np.ones(1000), np.zeros(1000)], members, delta=1e-5)
    assert eps["eps_empirical"] == math.inf
    fpr_hi = 1 - 0.025 ** (1 / 1000)  # Clopper-Pearson upper limit of 0 / 1000
    assert eps["eps_lower_bound"] == pytest.approx(math.log((1 - 1e-5 - fpr_hi) / fpr_hi), rel=1e-6)


def test_mia_bound_check_flags_an_impossible_roc() -> None:
    members = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    perfect = np.r_[np.ones(1000), np.zeros(1000)]
    assert bound_check(perfect, members, epsilon=1.0, delta=1e-5)["significant_violations"] > 0
    assert evaluate(perfect, members, epsilon=1.0, bootstrap=0)["bound_violated"] == 1.0
    rng = np.random.default_rng(0)
    noise = rng.normal(size=2000)
    assert evaluate(noise, members, epsilon=1.0, bootstrap=0)["bound_violated"] == 0.0


def test_mia_bootstrap_intervals_bracket_the_estimate() -> None:
    rng = np.random.default_rng(1)
    members = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = rng.normal(size=600) + members
    m = evaluate(scores, members, bootstrap=100, seed=0)
    assert m["auc_ci_low"] < m["auc"] < m["auc_ci_high"]
    assert m["auc_ci_high"] - m["auc_ci_low"] < 0.15
    assert m["n_members"] == 300 and m["n_nonmembers"] == 300


def test_mia_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="member"):
        point_metrics(np.zeros(3), np.ones(3, bool))
    with pytest.raises(ValueError, match="NaN"):
        point_metrics(np.array([0.0, np.nan]), np.array([True, False]))


def test_mia_overlaid_roc_draws_each_dp_bound(tmp_path) -> None:
    import matplotlib.image

    rng = np.random.default_rng(0)
    members = np.arange(400) < 200
    scores = rng.normal(size=400) + members
    plain, with_bound = tmp_path / "plain.png", tmp_path / "bound.png"
    plot_roc_settings({"a": (scores, members, None), "b": (-scores, members, None)}, plain)
    plot_roc_settings({"a": (scores, members, None), "b": (-scores, members, 1.0)}, with_bound)
    a, b = matplotlib.image.imread(plain), matplotlib.image.imread(with_bound)
    assert a.shape == b.shape == (660, 660, 4)  # 5.5 in at 120 dpi
    assert not np.array_equal(a, b)  # the epsilon = 1 bound and its legend entry are drawn
