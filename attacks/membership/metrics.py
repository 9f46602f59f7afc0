"""Membership-inference evaluation: ROC, AUC, TPR at low FPR, DP bounds (pure functions).

Follows the evaluation protocol of Carlini et al., "Membership Inference Attacks From First
Principles" (S&P 2022): members and non-members come from one pool split at random, and the
figures that matter are TPR at low FPR on a log-log ROC. For a target trained with
(epsilon, delta)-DP every test satisfies TPR <= min(1, e^eps FPR + delta,
1 - e^-eps (1 - delta - FPR)) (Kairouz et al., 2015); measured TPR/FPR pairs turn into an
empirical lower bound on epsilon with Clopper-Pearson intervals (Jagielski et al., NeurIPS
2020; Nasr et al., S&P 2021). The bound is valid only for a test fixed before it is evaluated:
the threshold (and the attack, among several) is chosen on one random half of the records and
the bound computed on the other. The intervals treat records as independent trials, which
records of one training run are not; for that case see the one-run audit of Steinke, Nasr and
Jagielski (NeurIPS 2023) in :mod:`attacks.membership.one_run`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

DEFAULT_FPRS = (0.001, 0.01, 0.1)


def _check(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    members = np.asarray(members).astype(bool).ravel()
    if scores.shape != members.shape:
        raise ValueError(f"scores {scores.shape} and members {members.shape} differ in shape")
    if not members.any() or members.all():
        raise ValueError("need at least one member and one non-member")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    return scores, members


def roc_counts(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when predicting "member" for ``score >= t``, over every distinct t.

    Returns ``(tp, fp, thresholds)``, starting at (0, 0, +inf) and ending at (P, N, min score).
    """
    scores, members = _check(scores, members)
    order = np.argsort(-scores, kind="mergesort")
    s, m = scores[order], members[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each tie group
    tp = np.cumsum(m)[last]
    fp = np.cumsum(~m)[last]
    return np.r_[0, tp], np.r_[0, fp], np.r_[np.inf, s[last]]


def roc_curve(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the score-threshold test, ties kept together."""
    tp, fp, thr = roc_counts(scores, members)
    return fp / fp[-1], tp / tp[-1], thr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; equals the Mann-Whitney probability with ties = 1/2)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR among thresholds whose FPR is below ``target``, strictly (LiRA's code:
    ``tpr[np.where(fpr < .001)[0][-1]]``). With N non-members and N x target <= 1 that is the TPR
    at zero false positives (``experiments.report.tables.tpr_label``)."""
    return float(tpr[fpr < target].max())


def balanced_accuracy(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Best membership accuracy over thresholds on a balanced prior: max (TPR + 1 - FPR) / 2."""
    return float(((tpr + 1.0 - fpr) / 2.0).max())


def fpr_label(fpr: float) -> str:
    """``0.001 -> "tpr@0.1%"``: the metric key used in metrics.json and tables."""
    return f"tpr@{fpr * 100:g}%"


def point_metrics(scores: np.ndarray, members: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS) -> dict[str, float]:
    """AUC, balanced accuracy and TPR at each FPR in ``fprs`` for one score set."""
    fpr, tpr, _ = roc_curve(scores, members)
    out = {"auc": auc(fpr, tpr), "balanced_accuracy": balanced_accuracy(fpr, tpr)}
    out.update({fpr_label(f): tpr_at_fpr(fpr, tpr, f) for f in fprs})
    return out


def bootstrap_ci(
    scores: np.ndarray,
    members: np.ndarray,
    fprs: Sequence[float] = DEFAULT_FPRS,
    *,
    samples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of :func:`point_metrics`, resampling members and non-members
    separately so every replicate keeps the class balance."""
    scores, members = _check(scores, members)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(members), np.flatnonzero(~members)
    reps: dict[str, list[float]] = {}
    for _ in range(samples):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        for k, v in point_metrics(scores[idx], members[idx], fprs).items():
            reps.setdefault(k, []).append(v)
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return {k: (float(np.percentile(v, lo)), float(np.percentile(v, hi))) for k, v in reps.items()}


def dp_tpr_bound(fpr: np.ndarray | float, epsilon: float, delta: float) -> np.ndarray:
    """Largest TPR any test can reach at ``fpr`` against an (epsilon, delta)-DP mechanism."""
    fpr = np.asarray(fpr, dtype=np.float64)
    e = math.exp(epsilon)
    return np.clip(np.minimum.reduce([np.ones_like(fpr), e * fpr + delta, 1 - (1 - delta - fpr) / e]), 0.0, 1.0)


def clopper_pearson(k: np.ndarray, n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson interval ``(low, high)`` for ``k`` successes out of ``n``."""
    k = np.asarray(k, dtype=np.float64)
    a = 1 - level
    low = np.where(k > 0, stats.beta.ppf(a / 2, k, n - k + 1), 0.0)
    high = np.where(k < n, stats.beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    return np.nan_to_num(low), np.nan_to_num(high, nan=1.0)


def _eps_from_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> float:
    """max over thresholds of ln((1 - delta - FPR)/FNR) and ln((1 - delta - FNR)/FPR), floored at 0."""
    a, b = _eps_terms(fpr, fnr, delta)
    return float(max(0.0, np.r_[a, b].max(initial=0.0)))


def _eps_terms(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The two per-threshold epsilon estimates ln((1 - delta - FPR)/FNR) and ln((1 - delta - FNR)/FPR)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.clip(1 - delta - fpr, 0, None) / fnr)
        b = np.log(np.clip(1 - delta - fnr, 0, None) / fpr)
    return np.nan_to_num(a, nan=-np.inf, posinf=np.inf), np.nan_to_num(b, nan=-np.inf, posinf=np.inf)


def selection_half(members: np.ndarray, seed: int = 0) -> np.ndarray:
    """A random half of the members and a random half of the non-members (bool mask): where a test is chosen."""
    members = np.asarray(members).astype(bool)
    rng = np.random.default_rng(seed)
    mask = np.zeros(members.size, bool)
    for group in (np.flatnonzero(members), np.flatnonzero(~members)):
        mask[rng.permutation(group)[: group.size // 2]] = True
    return mask


def epsilon_lower_bound(
    score_sets: Mapping[str, np.ndarray], members: np.ndarray, *, delta: float, level: float = 0.95, seed: int = 0
) -> tuple[float, str]:
    """A lower bound on epsilon that holds with confidence ``level`` for the best of several attacks.

    The attack, the threshold and which of the two epsilon estimates to use are chosen on a random
    half of the records (:func:`selection_half`), by the same Clopper-Pearson bound computed on
    that half (a finite score: the raw estimate is infinite wherever a threshold has no false
    positive, which would let the first attack listed win every tie); the bound is then computed
    on the other half alone, from Clopper-Pearson upper limits on its FPR and FNR at that
    threshold (two-sided at ``level``, so both one-sided limits hold together with probability
    ``level``). Returns ``(bound, attack)``.
    """
    members = np.asarray(members).astype(bool)
    pick = selection_half(members, seed)
    best = (-np.inf, "", 0.0, 0)  # (selection-half bound, attack, threshold, which term)
    for name, scores in score_sets.items():
        scores, _ = _check(scores, members)
        tp, fp, thr = roc_counts(scores[pick], members[pick])
        n_pos, n_neg = int(tp[-1]), int(fp[-1])
        _, fpr_hi = clopper_pearson(fp, n_neg, level)
        _, fnr_hi = clopper_pearson(n_pos - tp, n_pos, level)
        for which, term in enumerate(_eps_terms(fpr_hi, fnr_hi, delta)):
            i = int(np.argmax(term))
            if term[i] > best[0]:
                best = (float(term[i]), name, float(thr[i]), which)
    estimate, name, threshold, which = best
    if not estimate > 0:
        return 0.0, name
    scores = np.asarray(score_sets[name], dtype=np.float64)[~pick]
    held = members[~pick]
    n_pos, n_neg = int(held.sum()), int((~held).sum())
    guess = scores >= threshold
    _, fpr_hi = clopper_pearson(np.array([np.count_nonzero(guess & ~held)]), n_neg, level)
    _, fnr_hi = clopper_pearson(np.array([np.count_nonzero(~guess & held)]), n_pos, level)
    bound = float(_eps_terms(fpr_hi, fnr_hi, delta)[which][0])
    return max(0.0, bound), name


def empirical_epsilon(
    scores: np.ndarray, members: np.ndarray, *, delta: float, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Empirical epsilon: the point estimate over every threshold (optimistic: the best of many, on
    the data it is measured on) and the lower bound of :func:`epsilon_lower_bound` (valid at ``level``)."""
    tp, fp, _ = roc_counts(scores, members)
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    return {
        "eps_empirical": _eps_from_rates(fp / n_neg, 1 - tp / n_pos, delta),
        "eps_lower_bound": epsilon_lower_bound({"": scores}, members, delta=delta, level=level, seed=seed)[0],
    }


def bound_check(
    scores: np.ndarray, members: np.ndarray, *, epsilon: float, delta: float, level: float = 0.95
) -> dict[str, float]:
    """Compare the empirical ROC with the DP bound.

    ``points_above_bound`` counts raw points above the bound (finite samples put some there by
    chance at tiny FPR); ``significant_violations`` counts points whose TPR lower confidence limit
    exceeds the bound at their FPR upper confidence limit: any such point means a bug or an
    accounting error.
    """
    tp, fp, _ = roc_counts(scores, members)
    n_pos, n_neg = int(tp[-1]), int(fp[-1])
    tpr, fpr = tp / n_pos, fp / n_neg
    tpr_lo, _ = clopper_pearson(tp, n_pos, level)
    _, fpr_hi = clopper_pearson(fp, n_neg, level)
    raw = tpr > dp_tpr_bound(fpr, epsilon, delta) + 1e-12
    sig = tpr_lo > dp_tpr_bound(fpr_hi, epsilon, delta) + 1e-12
    return {"points_above_bound": float(raw.sum()), "significant_violations": float(sig.sum())}


def evaluate(
    scores: np.ndarray,
    members: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    bootstrap: int = 200,
    seed: int = 0,
    epsilon: float | None = None,
    delta: float = 1e-5,
) -> dict[str, float]:
    """Every figure of an audit for one attack: point metrics, their bootstrap intervals
    (``<key>_ci_low``/``<key>_ci_high``), the empirical epsilon, and the DP bound check when the
    target's ``epsilon`` is known (``bound_violated`` = 1.0 flags a bug or an accounting error)."""
    out = point_metrics(scores, members, fprs)
    if bootstrap > 0:
        for k, (lo, hi) in bootstrap_ci(scores, members, fprs, samples=bootstrap, seed=seed).items():
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = lo, hi
    out.update(empirical_epsilon(scores, members, delta=delta, seed=seed))
    out["n_members"] = float(np.count_nonzero(members))
    out["n_nonmembers"] = float(np.size(members) - np.count_nonzero(members))
    if epsilon is not None and math.isfinite(epsilon):
        check = bound_check(scores, members, epsilon=epsilon, delta=delta)
        out.update(check)
        out["bound_violated"] = float(check["significant_violations"] > 0)
    return out
