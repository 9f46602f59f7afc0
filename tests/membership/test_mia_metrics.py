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
    epsilon_lower_bound,
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
    assert m["tpr@50%"] == pytest.approx(1 / 3)  # strictly below 50 %: no false positive of the two
    # best threshold 0.9: (TPR + 1 - FPR) / 2 = (1/3 + 1) / 2
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)


def test_mia_perfect_and_uninformative_scores() -> None:
    members = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    perfect = point_metrics(np.r_[np.ones(50), np.zeros(50)], members)
    assert perfect["auc"] == 1.0 and perfect["tpr@0.1%"] == 1.0 and perfect["balanced_accuracy"] == 1.0
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
    fpr_hi = 1 - 0.025 ** (1 / 500)  # Clopper-Pearson upper limit of 0 / 500: the held-out half
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


def test_mia_tpr_at_fpr_is_strict_as_lira_counts_it() -> None:
    """1000 non-members, one of them scored above every member but the top 100: at 0.1 % FPR no false
    positive is allowed (LiRA's ``fpr < .001``), so the TPR is that of the 100 members above it."""
    members = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    scores = np.r_[np.linspace(2.0, 1.0, 1000), 1.95, np.zeros(999)]  # the false positive sits at rank 101
    m = point_metrics(scores, members, fprs=(0.001, 0.01))
    assert m["tpr@0.1%"] == pytest.approx(0.05)  # members scored above 1.95: 2 - k/999 > 1.95 for k < 50
    assert m["tpr@1%"] == 1.0  # one false positive in 1000 is below 1 %


def test_mia_tables_name_a_tpr_at_zero_false_positives() -> None:
    from experiments.report.tables import tpr_label

    assert tpr_label(0.001, 1000) == "TPR@0.1%*" and tpr_label(0.001, 1001) == "TPR@0.1%"
    assert tpr_label(0.01, 50) == "TPR@1%*" and tpr_label(0.01, 200) == "TPR@1%"


@pytest.mark.parametrize("attacks", [1, 3])
def test_mia_empirical_lower_bound_is_a_valid_95_percent_bound_on_random_scores(attacks) -> None:
    """No membership signal (true epsilon 0): the bound exceeds 0 in at most 5 % of 400 trials, also
    for the best of three attacks; the point estimate over all thresholds almost always does."""
    members = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    positive, optimistic = 0, 0
    for trial in range(400):
        rng = np.random.default_rng(trial)
        sets = {f"a{k}": rng.normal(size=1000) for k in range(attacks)}
        bound, _ = epsilon_lower_bound(sets, members, delta=1e-5, seed=trial)
        positive += bound > 0
        optimistic += empirical_epsilon(sets["a0"], members, delta=1e-5)["eps_empirical"] > 0
    assert positive <= 0.05 * 400
    assert optimistic > 0.9 * 400


def test_mia_lower_bound_picks_the_strong_attack_whatever_the_order() -> None:
    """The attack is chosen by its bound on the selection half, a finite score: listing a weak
    attack first neither hides a strong one nor changes the result (the raw estimate is infinite
    at every threshold without false positives, so the first attack listed used to win)."""
    rng = np.random.default_rng(0)
    members = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    strong = rng.normal(size=1000) + 2.0 * members
    weak = rng.normal(size=1000) + 0.2 * members
    first = epsilon_lower_bound({"weak": weak, "strong": strong}, members, delta=1e-5)
    second = epsilon_lower_bound({"strong": strong, "weak": weak}, members, delta=1e-5)
    assert first == second and first[1] == "strong" and first[0] > 1.0
