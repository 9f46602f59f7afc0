"""Steinke, Nasr and Jagielski's one-run audit: the p-value, the epsilon bound, its validity, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from attacks.membership.one_run import epsilon_lower_bound, one_run_audit, p_value
from experiments.cli import cli
from experiments.membership.config import MIAConfig
from fl.core.errors import ConfigError


def test_one_run_bound_is_exact_for_perfect_guesses_at_delta_zero() -> None:
    """With delta 0 the p-value is P[Binomial(r, q) >= v]; all 100 guesses right is q^100, so the
    bound solves q^100 = 0.05 with q = e^eps / (1 + e^eps)."""
    q = 0.05 ** (1 / 100)
    assert epsilon_lower_bound(1000, 100, 100, delta=0.0) == pytest.approx(math.log(q / (1 - q)), rel=1e-5)
    assert p_value(1000, 100, 50, 0.0, 0.0) == pytest.approx(0.5397946187, rel=1e-9)  # P[Bin(100, 1/2) >= 50]


def test_one_run_delta_term_only_weakens_the_bound() -> None:
    for v in (60, 75, 90):
        assert p_value(1000, 100, v, 1.0, 1e-5) >= p_value(1000, 100, v, 1.0, 0.0)
        assert epsilon_lower_bound(1000, 100, v, delta=1e-5) <= epsilon_lower_bound(1000, 100, v, delta=0.0)
    assert epsilon_lower_bound(1000, 100, 50, delta=1e-5) == 0.0  # chance-level guesses prove nothing


def test_one_run_bound_is_valid_on_scores_with_no_signal() -> None:
    """Independent fair-coin members, scores unrelated to them (true epsilon 0): the right guesses
    are Binomial(100, 1/2), so the bound may be positive in at most 5 % of trials (4.4 % is the
    discrete test's exact size at delta 0); 4000 trials."""
    positive = 0
    for trial in range(4000):
        rng = np.random.default_rng(10**6 + trial)
        members = rng.random(1000) < 0.5
        audit = one_run_audit(rng.normal(size=1000), members, k_pos=50, k_neg=50, delta=1e-5)
        positive += audit.epsilon > 0
    assert 0.035 * 4000 <= positive <= 0.05 * 4000


def test_one_run_guesses_count_the_top_and_bottom_scores() -> None:
    members = np.array([1, 1, 0, 1, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    audit = one_run_audit(scores, members, k_pos=2, k_neg=2, delta=0.0)
    assert (audit.records, audit.guesses, audit.correct) == (6, 4, 3)  # top 2 both in; bottom 2: one out
    with pytest.raises(ConfigError, match="at most 6 together"):
        one_run_audit(scores, members, k_pos=4, k_neg=3, delta=0.0)


def test_one_run_needs_independent_inclusions() -> None:
    with pytest.raises(ConfigError, match="needs independent inclusions: set split = 'bernoulli'"):
        MIAConfig(one_run_guesses=10)
    with pytest.raises(ConfigError, match="unknown split 'halves'; valid choices: balanced, bernoulli"):
        MIAConfig(split="halves")
    with pytest.raises(ConfigError, match=r"one_run_guesses must be in \[0, pool_size / 2 = 50\]"):
        MIAConfig(split="bernoulli", pool_size=100, one_run_guesses=51)


def test_mia_cli_reports_the_one_run_bound(tmp_path) -> None:
    out = tmp_path / "run"
    secret = tmp_path / "secret"  # the data owner's: the same coins and target on every run
    secret.write_text("5eed" * 8)
    res = CliRunner().invoke(
        cli,
        [
            "--device",
            "cpu",
            "mia",
            "--dataset",
            "sample",
            "--model",
            "mlp",
            "--norm",
            "none",
            "--model-option",
            "hidden=32",
            "--model-option",
            "depth=1",
            "--model-option",
            "bias=true",
            "--attack",
            "loss",
            "--pool-size",
            "80",
            "--epochs",
            "2",
            "--bootstrap",
            "0",
            "--split",
            "bernoulli",
            "--one-run-guesses",
            "10",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--secret-file",
            str(secret),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ε one-run per record" in res.output and "/20)" in res.output
    m = json.loads((out / "metrics.json").read_text())["attacks"]["loss"]
    assert m["one_run_records"] == 80 and m["one_run_guesses"] == 20 and m["eps_one_run"] >= 0
    bad = CliRunner().invoke(cli, ["--device", "cpu", "mia", "--one-run-guesses", "5"])
    assert bad.exit_code == 2 and "needs independent inclusions" in bad.output
    fed = CliRunner().invoke(cli, ["--device", "cpu", "mia", "--federated", str(tmp_path), "--split", "bernoulli"])
    assert fed.exit_code == 2 and "--split applies to the black-box audit, not to --federated" in fed.output
