"""Black-box membership inference against a Flower federation's final global model (bundled sample data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from experiments.cli import cli
from experiments.membership.config import MIAConfig
from fl.core.errors import ConfigError

FED = [
    "--dataset",
    "sample",
    "--model",
    "2nn",
    "--clients",
    "2",
    "--rounds",
    "2",
    "--batch-size",
    "8",
    "--pool-size",
    "40",
    "--population-size",
    "20",
    "--shadows",
    "4",
    "--bootstrap",
    "0",
]
DP_CENTRAL = ["--defense", "dp-central", "--target-epsilon", "4"]  # the audits that share one shadow cache


def _mia(*args: str):
    return CliRunner().invoke(cli, ["-q", "--device", "cpu", "mia", *args])


@pytest.fixture(scope="module")
def dp_central_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("fed_mia")
    cache = tmp_path_factory.mktemp("cache")
    result = _mia(*FED, *DP_CENTRAL, "--cache-dir", str(cache), "--out", str(out))
    return out, cache, result


def test_mia_federated_target_runs_end_to_end_with_its_epsilon_and_client_level_rows(dp_central_audit) -> None:
    out, _, result = dp_central_audit
    assert result.exit_code == 0, result.output
    assert "final global model of 2 clients, 2 rounds" in result.output
    assert "per client, central (δ=1e-05, rdp)" in result.output and "client level" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    fed = json.loads((out / "target" / "result.json").read_text())
    # the epsilon is the federation's own (its accountant's, cross-checked in tests/defenses), with its unit
    assert metrics["epsilon"] == fed["epsilon"] and metrics["epsilon_unit"] == "client-central"
    assert fed["epsilon"] == pytest.approx(4.0, abs=0.1)
    assert set(metrics["attacks"]) == {"loss", "lira", "rmia"} == set(metrics["client_level"])
    assert metrics["client_level"]["loss"]["n_members"] == 2  # the two clients of the run
    assert metrics["shadows"] == {
        "path": "federation",
        "cache_key": metrics["shadows"]["cache_key"],
        "reused": 0,
        "trained": 4,
    }
    # a record-level audit is not bounded by a client-level epsilon, a client-level one is
    assert "bound_violated" not in metrics["attacks"]["loss"]
    assert metrics["client_level"]["loss"]["bound_violated"] == 0.0
    assert metrics["client_level"]["loss"]["n_nonmembers"] == 100  # random non-member groups of the clients' sizes


def test_mia_federated_target_trains_on_exactly_the_members(dp_central_audit) -> None:
    """The federation's clients hold the pool's members and nothing else (the audit's truth)."""
    out, _, _ = dp_central_audit
    saved = np.load(out / "scores.npz")
    parts = np.load(out / "target" / "truth" / "partitions.npz")
    held = np.sort(np.concatenate([parts[k] for k in parts.files]))
    assert saved["members"].sum() == 20
    assert held.tolist() == np.sort(saved["pool"][saved["members"]]).tolist()


def test_mia_federated_shadows_are_cached_per_recipe(dp_central_audit, tmp_path) -> None:
    _, cache, _ = dp_central_audit
    result = _mia(*FED, *DP_CENTRAL, "--cache-dir", str(cache), "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["shadows"]["reused"] == 4
    other = [*FED[:7], "3", *FED[8:]]  # --rounds 3: another recipe, other shadows
    result = _mia(*other, *DP_CENTRAL, "--cache-dir", str(cache), "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["shadows"]["trained"] == 4


def test_mia_federated_dp_local_target_is_bounded_per_record(tmp_path) -> None:
    result = _mia(
        *FED,
        "--defense",
        "dp-local",
        "--target-epsilon",
        "8",
        "--cache-dir",
        str(tmp_path / "c"),
        "--attack",
        "loss",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["epsilon_unit"] == "record" and metrics["epsilon"] == pytest.approx(8.0, abs=0.1)
    assert metrics["attacks"]["loss"]["bound_violated"] == 0.0  # the record-level bound was checked
    assert "bound_violated" not in metrics["client_level"]["loss"]  # a record epsilon does not bound a client


def test_mia_federated_target_feeds_the_server_side_audit(dp_central_audit, tmp_path) -> None:
    out, _, _ = dp_central_audit
    result = _mia(
        "--federated",
        str(out / "target"),
        "--attack",
        "grad-cosine",
        "--candidates",
        "5",
        "--bootstrap",
        "0",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "grad-cosine" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--defense", "dp-central", "--target-epsilon", "4"], "dp-central defense needs a federated target"),
        (["--defense", "dp-local"], "needs a privacy level: give target_epsilon (--target-epsilon)"),
        (["--rounds", "2"], "--rounds applies to a federated target"),
        (["--clients", "2", "--epochs", "3"], "--epochs applies to a central target"),
        (["--clients", "2", "--dropout", "0.2"], "--dropout does not apply to --defense none"),
        (["--defense", "dp-local", "--clipping-norm", "2"], "--clipping-norm does not apply to --defense dp-local"),
        (["--model-option", "dropout=0.2"], "--model-option dropout=... is set by the dropout defense"),
        (["--clients", "30"], "pool_size // 2 = 20 < clients = 30"),
    ],
)
def test_mia_federated_bad_input_is_one_line(args, message, tmp_path) -> None:
    result = _mia("--dataset", "sample", "--pool-size", "40", "--population-size", "20", *args, "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_mia_federated_target_repeats_with_its_clients_secret(tmp_path) -> None:
    """With --secret-file (--client-secret-file) the members and the target federation repeat bit
    for bit (same seed, same secret); the secret is kept on the owner's and the clients' side."""
    from fl.federation.checkpoint import Checkpoint

    secret = tmp_path / "secret"
    secret.write_text("ab" * 16 + "\n")
    runs = []
    for name in ("a", "b"):
        result = _mia(*FED, "--attack", "loss", "--client-secret-file", str(secret), "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        runs.append(Checkpoint.load(tmp_path / name / "target").weights)
    assert all((runs[0][k] == runs[1][k]).all() for k in runs[0])
    scores = [np.load(tmp_path / name / "scores.npz")["score_loss"] for name in ("a", "b")]
    assert (scores[0] == scores[1]).all()
    members = [np.load(tmp_path / name / "scores.npz")["members"] for name in ("a", "b")]
    assert (members[0] == members[1]).all()
    other = tmp_path / "other"
    other.write_text("cd" * 16 + "\n")
    result = _mia(*FED, "--attack", "loss", "--secret-file", str(other), "--out", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    assert not (np.load(tmp_path / "c" / "scores.npz")["members"] == members[0]).all()  # same --seed
    assert (tmp_path / "a" / "owner" / "secret").read_text().strip() == "ab" * 16
    assert (tmp_path / "a" / "target" / "clients" / "client_secret").read_text().strip() == "ab" * 16
    assert "ab" * 16 not in (tmp_path / "a" / "config.json").read_text()
    assert "ab" * 16 not in (tmp_path / "a" / "target" / "config.json").read_text()


def test_mia_config_refuses_standardising_a_federated_target() -> None:
    with pytest.raises(ConfigError, match="standardize does not apply"):
        MIAConfig(clients=2, standardize=True)
    assert MIAConfig(clients=2).standardized is False and MIAConfig().standardized is True
