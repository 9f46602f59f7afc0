"""LiRA (Carlini et al., S&P 2022) and RMIA (Zarifzadeh et al., ICML 2024) scores against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.membership.base import MembershipObservation
from attacks.membership.lira import gaussian_params
from fl.core.errors import ConfigError

# 4 shadows, 1 query view, 2 records: record 0 is IN for shadows 0, 1; record 1 for shadows 0, 2, 3
PHI = np.array([[[1.0, 4.0]], [[3.0, 9.0]], [[0.0, 6.0]], [[2.0, 5.0]]])  # (S=4, A=1, N=2)
INSIDE = np.array([[True, True], [True, False], [False, True], [False, True]])


def test_lira_gaussians_equal_a_hand_computation() -> None:
    mu_in, sd_in, mu_out, sd_out = gaussian_params(PHI, INSIDE, fix_variance=True)
    # IN values: record 0 {1, 3} (mean 2), record 1 {4, 6, 5} (mean 5); OUT: record 0 {0, 2} (mean 1), record 1 {9}
    np.testing.assert_allclose(mu_in, [[2.0, 5.0]])
    np.testing.assert_allclose(mu_out, [[1.0, 9.0]])
    # pooled residuals: IN (1 + 1) + (1 + 1 + 0) = 4 over 5 values - 2 means; OUT (1 + 1) + 0 = 2 over 3 - 2
    np.testing.assert_allclose(sd_in, np.full((1, 2), np.sqrt(4 / 3)))
    np.testing.assert_allclose(sd_out, np.full((1, 2), np.sqrt(2 / 1)))
    mu_in, sd_in, mu_out, sd_out = gaussian_params(PHI, INSIDE, fix_variance=False)
    np.testing.assert_allclose(sd_in, [[np.sqrt(2 / 1), np.sqrt(2 / 2)]])
    np.testing.assert_allclose(sd_out, [[np.sqrt(2 / 1), np.sqrt(2 / 1)]])  # one OUT value: the pooled std


def test_lira_a_duplicated_query_view_changes_nothing() -> None:
    """Each view is a dimension: the same view twice gives the same means, stds and imputations."""
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(6, 1, 40))
    inside = np.zeros((6, 40), bool)
    inside[:3, :20] = True  # records 20..39 have no IN shadow: their IN mean is imputed from the gap
    inside[3:, 20:] = True
    inside[:, :5] = True  # and records 0..4 no OUT shadow
    one = gaussian_params(phi, inside, fix_variance=True)
    two = gaussian_params(np.concatenate([phi, phi], axis=1), inside, fix_variance=True)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(np.broadcast_to(a, b.shape), b, rtol=1e-12)


def test_lira_refuses_when_no_variance_can_be_estimated() -> None:
    inside = np.array([[True, False], [False, True]])  # 2 shadows: one IN and one OUT per record
    with pytest.raises(ValueError, match="no record has two IN or two OUT values; use at least 3"):
        gaussian_params(np.ones((2, 1, 2)), inside, fix_variance=True)


def test_rmia_ties_are_broken_by_the_records_own_ratio() -> None:
    """Zarifzadeh et al.'s fraction takes at most Z + 1 values; with the ratio as tie-break the order
    is the ratio's, and each score stays within 1 / Z of the fraction."""
    from attacks.membership.rmia import rmia_scores

    rng = np.random.default_rng(0)
    ratio_x, ratio_z = rng.lognormal(size=1000), rng.lognormal(size=20)  # Z = 20: ties in the hundreds
    scores = rmia_scores(ratio_x, ratio_z, gamma=1.0)
    fraction = (ratio_x[:, None] / ratio_z[None] > 1.0).mean(1)
    assert len(np.unique(fraction)) <= 21 and len(np.unique(scores)) == 1000
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(ratio_x))
    assert np.all((scores >= fraction) & (scores < fraction + 1 / 20))
    same = rmia_scores(np.array([2.0, 2.0, 0.5]), ratio_z, gamma=1.0)
    assert same[0] == same[1]  # equal ratios still tie


def _synthetic_observation(seed: int = 0, shadows: int = 6, n: int = 400, z: int = 100):
    """Models whose true-class logit is a per-record difficulty plus a bonus where the record is IN."""
    from attacks.membership.shadows import balanced_assignment

    rng = np.random.default_rng(seed)
    hard, hard_z = rng.normal(size=n), rng.normal(size=z)
    members = rng.random(n) < 0.5
    inside = balanced_assignment(shadows, n, seed=seed + 1)

    def logits(margin: np.ndarray) -> torch.Tensor:  # (..., M) true-class margin -> (..., 1, M, 2)
        noisy = margin + rng.normal(scale=0.5, size=margin.shape)
        return torch.from_numpy(np.stack([noisy, np.zeros_like(noisy)], -1)).float().unsqueeze(-3)

    return (
        MembershipObservation(
            labels=torch.zeros(n, dtype=torch.long),
            target_logits=logits(hard + 1.5 * members),
            shadow_logits=logits(hard[None] + 1.5 * inside),
            shadow_in=torch.from_numpy(inside),
            population_labels=torch.zeros(z, dtype=torch.long),
            target_population_logits=logits(hard_z),
            shadow_population_logits=logits(np.broadcast_to(hard_z, (shadows, z)).copy()),
        ),
        members,
    )


def test_rmia_offline_calibrates_a_on_a_shadow_model() -> None:
    """ML Privacy Meter's tuning: shadow 0 plays the target, shadows 1.. its references, and the
    grid value with the highest AUC on shadow 0's members is used (fixed 0.3 before)."""
    from attacks.membership.metrics import point_metrics
    from attacks.membership.rmia import A_GRID, RMIAOffline

    obs, members = _synthetic_observation()
    inside = obs.shadow_in.numpy()
    covered = torch.from_numpy((~inside[1:]).any(0))
    stand_in = MembershipObservation(
        labels=obs.labels[covered],
        target_logits=obs.shadow_logits[0][:, covered],
        shadow_logits=obs.shadow_logits[1:, :, covered],
        shadow_in=obs.shadow_in[1:, covered],
        population_labels=obs.population_labels,
        target_population_logits=obs.shadow_population_logits[0],
        shadow_population_logits=obs.shadow_population_logits[1:],
    )
    aucs = [point_metrics(RMIAOffline(a=a).score(stand_in), inside[0, covered.numpy()])["auc"] for a in A_GRID]
    best = A_GRID[int(np.argmax(aucs))]
    assert max(aucs) - min(aucs) > 0.01  # the choice matters on this observation
    auto = RMIAOffline()
    assert auto.fitted(obs) == {"a": best}
    np.testing.assert_array_equal(auto.score(obs), RMIAOffline(a=best).score(obs))
    assert RMIAOffline(a=0.3).fitted(obs) == {"a": 0.3}
    assert point_metrics(auto.score(obs), members)["auc"] > 0.75


def test_rmia_offline_calibration_needs_three_shadows() -> None:
    from attacks.membership.rmia import RMIAOffline

    obs, _ = _synthetic_observation(shadows=2)
    with pytest.raises(ConfigError, match="needs at least 3 shadow models, got 2"):
        RMIAOffline().check(obs)
    RMIAOffline(a=0.3).check(obs)  # a fixed a works with 2
