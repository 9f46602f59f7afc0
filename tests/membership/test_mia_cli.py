"""``fedleak mia`` through click: bad input is one clear line, a tiny audit runs end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from experiments.cli import cli


def _run(*args: str):
    return CliRunner().invoke(cli, ["--device", "cpu", "mia", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "lira", "--shadows", "2"], "shadows must be >= 3 for lira, got 2"),
        (
            ["--attack", "loss,rmia-offline", "--shadows", "1", "--rmia-a", "0.3"],
            "shadows must be >= 2 for rmia-offline, got 1",
        ),
        (
            ["--attack", "rmia-offline", "--shadows", "2"],
            "shadows must be >= 3 for rmia-offline (it calibrates a; or give a fixed a), got 2",
        ),
        (["--rmia-a", "1.5"], "'1.5' is neither auto nor a number in [0, 1]"),
        (["--rmia-a", "often"], "'often' is neither auto nor a number in [0, 1]"),
        (["--fpr", "0.01,1.5"], "FPR 1.5 is outside (0, 1)"),
        (["--fpr", "abc"], "is not a comma-separated list of numbers"),
        (["--attack", "nope"], "unknown membership attack 'nope'; valid choices: loss, confidence"),
        (["--model-option", "width"], "is not KEY=VALUE"),
    ],
)
def test_mia_cli_rejects_bad_input(args: list[str], message: str) -> None:
    res = _run(*args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_mia_cli_pool_too_large(data_root, tmp_path) -> None:
    res = _run(
        "--dataset",
        "cifar10",
        "--attack",
        "loss",
        "--pool-size",
        "100000",
        "--data-dir",
        str(data_root),
        "--out",
        str(tmp_path),
    )
    assert res.exit_code == 2
    assert "pool_size 100000 + population_size 0 exceeds the 6187 records of cifar10" in res.output


def test_mia_cli_tiny_audit(data_root, tmp_path, caplog) -> None:
    out = tmp_path / "run"
    res = _run(
        "--dataset", "cifar10", "--model", "mlp", "--norm", "none", "--model-option", "hidden=32",
        "--model-option", "depth=1", "--model-option", "bias=true", "--attack", "loss,entropy",
        "--pool-size", "400", "--epochs", "3", "--bootstrap", "10", "--fpr", "0.01,0.1",
        "--data-dir", str(data_root), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| loss |" in res.output and "TPR@1%" in res.output
    # the target's accuracy line is printed once; at default verbosity no log repeats it
    assert res.output.count("target: train accuracy") == 1
    assert not [r for r in caplog.records if "target: train acc" in r.getMessage()]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {"loss", "entropy"}
    assert "tpr@10%" in metrics["attacks"]["loss"] and metrics["epsilon"] is None
    assert json.loads((out / "config.json").read_text())["model_options"] == {
        "hidden": 32,
        "depth": 1,
        "bias": True,
    }
    assert (out / "roc.png").stat().st_size > 0


def test_mia_members_and_target_training_come_from_the_owners_secret(tmp_path) -> None:
    """The members, the target's batches and dropout masks derive from the data owner's secret,
    kept in OUT/owner/secret (0600) and in no other file of the run: whoever holds config.json
    and the public seed cannot redraw them. The same secret file repeats the audit bit for bit."""
    import stat

    import numpy as np

    args = [
        "--dataset", "sample-fmnist", "--model", "mlp", "--norm", "none", "--model-option", "hidden=16",
        "--model-option", "depth=1", "--attack", "loss", "--pool-size", "60", "--population-size", "0",
        "--epochs", "2", "--defense", "dropout", "--bootstrap", "0", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    for name in ("a", "b"):
        assert _run(*args, "--out", str(tmp_path / name)).exit_code == 0
    keep = tmp_path / "a" / "owner" / "secret"
    secret = keep.read_text().strip()
    assert len(secret) == 32 and stat.S_IMODE(keep.stat().st_mode) == 0o600
    assert secret != (tmp_path / "b" / "owner" / "secret").read_text().strip()
    for path in [*(tmp_path / "a").rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file() and path != keep:
            assert secret.encode() not in path.read_bytes(), path
    # the cached target's folder is a keyed hash under the secret: the cache names no member set
    # that a reader could test a guess against
    (target,) = [p for p in (tmp_path / "cache").glob("target-*") if (p / "target.json").is_file()][:1]
    assert "owner" not in json.loads((target / "target.json").read_text())
    again = _run(*args, "--secret-file", str(keep), "--out", str(tmp_path / "c"))
    assert again.exit_code == 0, again.output
    a, b, c = (np.load(tmp_path / n / "scores.npz") for n in "abc")
    assert (a["members"] == c["members"]).all() and (a["score_loss"] == c["score_loss"]).all()
    assert not (a["members"] == b["members"]).all()  # another owner, other members (same --seed)


class _Stop(Exception):
    """Raised by the stand-in runners once they hold the config the command built."""


def test_mia_cli_options_reach_the_configs(monkeypatch, tmp_path) -> None:
    """Given options reach their settings (``--lira-variance`` and ``--client`` too), unset ones are
    the configs' defaults, and the global ``--seed`` is the config's."""
    import experiments.membership
    import experiments.membership.server_side
    from defenses import DefenseConfig
    from experiments.membership.config import MIAConfig
    from experiments.membership.server_side import FederatedMIAConfig

    seen: list[object] = []

    def capture(*args: object, **kw: object) -> None:
        seen.append(next(a for a in args if isinstance(a, (MIAConfig, FederatedMIAConfig))))
        raise _Stop

    monkeypatch.setattr(experiments.membership, "run_mia", capture)
    monkeypatch.setattr(experiments.membership.server_side, "run_federated_mia", capture)
    cli_args = ["--device", "cpu", "--seed", "3", "mia"]
    CliRunner().invoke(cli, cli_args)
    assert seen.pop() == MIAConfig(seed=3)
    args = ["--attack", "loss", "--attack", "lira", "--lira-variance", "per-example", "--rmia-a", "0.3"]
    args += ["--fpr", "0.01,0.1", "--model-option", "width=8", "--epochs", "2", "--norm", "none"]
    CliRunner().invoke(cli, [*cli_args, *args, "--delta", "1e-6"])  # the empirical epsilon's delta, without DP too
    assert seen.pop() == MIAConfig(
        attacks=("loss", "lira"), fix_variance=False, offline_a=0.3, fprs=(0.01, 0.1),
        model_options={"width": 8}, epochs=2, norm="none", defense=DefenseConfig(delta=1e-6), seed=3,
    )  # fmt: skip
    dp = ["--defense", "dp-local", "--noise-multiplier", "0.8", "--max-grad-norm", "2", "--accountant", "prv"]
    CliRunner().invoke(cli, [*cli_args, *dp])
    assert seen.pop() == MIAConfig(
        defense=DefenseConfig(name="dp-local", noise_multiplier=0.8, max_grad_norm=2.0, accountant="prv"), seed=3
    )
    fed = ["--federated", str(tmp_path), "--client", "0", "--client", "2", "--round", "2", "--attack", "grad-norm"]
    CliRunner().invoke(cli, [*cli_args, *fed, "--bootstrap", "0"])
    assert seen.pop() == FederatedMIAConfig(attacks=("grad-norm",), server_round=2, clients=(0, 2), bootstrap=0, seed=3)
    CliRunner().invoke(cli, [*cli_args, "--federated", str(tmp_path)])
    assert seen.pop() == FederatedMIAConfig(seed=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clients", "2", "--epochs", "3"], "--epochs applies to a central target (leave it out with --clients)"),
        (["--rounds", "3"], "--rounds applies to a federated target (--clients N)"),
        (["--federated", ".", "--one-run-guesses", "3"], "--one-run-guesses applies to the black-box audit"),
        (["--federated", ".", "--defense", "dp-local"], "--defense applies to the black-box audit, not to --federated"),
        (
            ["--defense", "dp-local", "--dropout", "0.2"],
            "--dropout does not apply to --defense dp-local, which takes --noise-multiplier, --target-epsilon, "
            "--delta, --max-grad-norm, --accountant",
        ),
        (["--norm", "layer"], "'layer' is not one of 'group', 'batch', 'none'"),
    ],
)
def test_mia_cli_refuses_options_of_the_other_mode(args: list[str], message: str) -> None:
    res = _run(*args)
    assert res.exit_code == 2 and message in res.output, res.output
