"""The Likelihood Ratio Attack (LiRA) of Carlini et al., "Membership Inference Attacks From First
Principles" (S&P 2022).

For each record, the logit-scaled confidence ``phi`` of shadow models that trained on it (IN) and
of those that did not (OUT) is modelled by two Gaussians; the target's ``phi`` is scored by the
likelihood ratio (online) or by a one-sided test against OUT alone (offline). With few shadows a
global (fixed) variance is more stable than per-example variances. Each query augmentation
(image and mirror image for CIFAR) is a separate dimension; scores are averaged across them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from attacks.membership.base import MEMBERSHIP_ATTACKS, MembershipAttack, MembershipObservation
from attacks.membership.signals import scaled_logit

MIN_STD = 1e-3  # floor on the Gaussian std, so a record whose shadows agree exactly stays finite


def gaussian_params(
    phi: np.ndarray, inside: np.ndarray, *, fix_variance: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-record, per-query IN/OUT means and stds of ``phi`` (S, A, N) under the assignment ``inside`` (S, N).

    Every (shadow, query, record) value counts once. A record lacking IN (or OUT) shadows gets the
    other side's mean shifted by the global mean IN/OUT gap, so few shadows still give a score for
    every record. The global (fixed) std pools the residuals around the per-record means, over
    the values less the means estimated from them (one degree of freedom each); a record with fewer
    than two values on a side uses it too. This departs from Carlini et al.'s code, whose fixed
    variance is the spread of all IN (OUT) values around their overall mean (between-record spread
    included) with medians for the per-record means: fedleak's pooled within-record spread is
    smaller, so its fixed-variance scores are sharper.

    Raises ``ValueError`` when no record has two values on a side (2 or fewer shadows), since no
    variance can then be estimated.
    """
    w_in = np.broadcast_to(inside[:, None, :], phi.shape).astype(np.float64)
    w_out = 1.0 - w_in
    if not inside.any() or inside.all():
        raise ValueError("the shadow assignment needs IN and OUT models overall")
    n_in, n_out = w_in.sum(0), w_out.sum(0)  # (A, N)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_in = (phi * w_in).sum(0) / n_in
        mu_out = (phi * w_out).sum(0) / n_out
    gap = (phi * w_in).sum() / w_in.sum() - (phi * w_out).sum() / w_out.sum()
    mu_in = np.where(n_in > 0, mu_in, mu_out + gap)
    mu_out = np.where(n_out > 0, mu_out, mu_in - gap)
    res_in = ((phi - mu_in) ** 2 * w_in).sum(0)
    res_out = ((phi - mu_out) ** 2 * w_out).sum(0)
    dof_in, dof_out = w_in.sum() - np.count_nonzero(n_in), w_out.sum() - np.count_nonzero(n_out)
    if dof_in < 1 or dof_out < 1:
        raise ValueError(
            f"LiRA cannot estimate a variance from {phi.shape[0]} shadow models: no record has two IN "
            "or two OUT values; use at least 3"
        )
    glob_in, glob_out = np.sqrt(res_in.sum() / dof_in), np.sqrt(res_out.sum() / dof_out)
    if fix_variance:
        sd_in, sd_out = np.full_like(mu_in, glob_in), np.full_like(mu_out, glob_out)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            sd_in = np.where(n_in > 1, np.sqrt(res_in / (n_in - 1)), glob_in)
            sd_out = np.where(n_out > 1, np.sqrt(res_out / (n_out - 1)), glob_out)
    return mu_in, np.maximum(sd_in, MIN_STD), mu_out, np.maximum(sd_out, MIN_STD)


def _phis(obs: MembershipObservation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    assert obs.shadow_logits is not None and obs.shadow_in is not None
    target = scaled_logit(obs.target_logits, obs.labels).numpy()  # (A, N)
    shadows = scaled_logit(obs.shadow_logits, obs.labels).numpy()  # (S, A, N)
    return target, shadows, obs.shadow_in.numpy().astype(bool)


@MEMBERSHIP_ATTACKS.register("lira")
@dataclass(frozen=True)
class LiRA(MembershipAttack):
    """Online LiRA: ``log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out)``, averaged over queries."""

    fix_variance: bool = True  # one global std per side (best with few shadows, as in the paper)

    needs_shadows = True
    min_shadows = 3  # with 2, every record has one IN and one OUT value: no variance to estimate

    def score(self, obs: MembershipObservation) -> np.ndarray:
        target, shadows, inside = _phis(obs)
        mu_in, sd_in, mu_out, sd_out = gaussian_params(shadows, inside, fix_variance=self.fix_variance)
        llr = stats.norm.logpdf(target, mu_in, sd_in) - stats.norm.logpdf(target, mu_out, sd_out)
        return llr.mean(0)


@MEMBERSHIP_ATTACKS.register("lira-offline")
@dataclass(frozen=True)
class LiRAOffline(MembershipAttack):
    """Offline LiRA: the one-sided test ``Pr[Z < phi]``, ``Z ~ N(mu_out, sd_out)``, scored as
    ``-log Pr[Z > phi]`` (same order, no saturation), averaged over queries."""

    fix_variance: bool = True  # one global std (best with few shadows, as in the paper)

    needs_shadows = True
    min_shadows = 3  # as online LiRA: the OUT variance needs records with two OUT values

    def score(self, obs: MembershipObservation) -> np.ndarray:
        target, shadows, inside = _phis(obs)
        _, _, mu_out, sd_out = gaussian_params(shadows, inside, fix_variance=self.fix_variance)
        return -stats.norm.logsf(target, mu_out, sd_out).mean(0)
