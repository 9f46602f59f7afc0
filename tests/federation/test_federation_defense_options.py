"""Every DefenseConfig field is a ``fedleak simulate`` option, and dp-local's target epsilon holds over the run."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from click.testing import CliRunner

from defenses import DefenseConfig
from experiments.cli import cli
from fl.federation.sampling import planned_rounds, sample_clients

BASE = [
    "-q",
    "simulate",
    "--dataset",
    "sample",
    "--model",
    "mlp",
    "--clients",
    "3",
    "--engine",
    "inline",
    "--batch-size",
    "16",
]


def test_federation_cli_options_and_flower_run_config_come_from_one_schema():
    """Every field of the federation's configs is a described setting; ``fedleak simulate`` has one
    option per setting (and only its own run options besides), of the setting's type and default;
    the Flower App's run config has one key per setting it takes, with the same default."""
    import tomllib
    from pathlib import Path

    from experiments.cli.simulate import simulate
    from experiments.federated.config import SimulationConfig
    from experiments.federated.schema import federation_settings
    from experiments.flower.run_config import APP_KEYS, config_from_run_config, run_config_keys
    from fl.federation.settings import TrainSettings

    settings = federation_settings()
    described = {s.name for s in settings}
    for cls in (SimulationConfig, TrainSettings, DefenseConfig):
        assert {f.name for f in fields(cls)} - {"train", "defense", "client_secret"} <= described, cls
    options = {p.name: p for p in simulate.params}
    own = {"baseline", "client_secret_file", "resume", "export_partitions", "out"}
    assert set(options) == {s.name for s in settings if s.cli} | own
    for s in settings:
        if not s.cli:
            continue
        option = options[s.name]
        assert s.flag in option.opts, s.name
        assert option.multiple if s.kind is dict else option.default is None, s.name  # unset: the config's default
        if s.kind in (int, float) and s.default is not None:
            assert option.type.name == {int: "integer", float: "float"}[s.kind] and str(s.default) in option.help, (
                s.name
            )
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    run_config = pyproject["tool"]["flwr"]["app"]["config"]
    assert set(run_config) == set(run_config_keys()) | APP_KEYS
    assert config_from_run_config(run_config) == SimulationConfig(attack_clients=1)
    for key, s in run_config_keys().items():  # "" stands for an unset (None) default in TOML
        if key == "attack-clients":  # the command line's default: 1 (used once an attack is set)
            continue
        assert run_config[key] == ("" if s.default is None else s.default) or s.kind in (dict, tuple), key


def test_federation_cli_attack_choices_are_the_configs():
    from experiments.cli.params import CAPTURE_ATTACKS
    from experiments.federated.config import SERVER_ATTACKS

    assert ("none", *CAPTURE_ATTACKS) == SERVER_ATTACKS


def test_federation_simulate_passes_every_new_defense_flag_to_the_config(tmp_path):
    args = [
        "--rounds",
        "1",
        "--defense",
        "quantize",
        "--no-stochastic-rounding",
        "--quantize-bits",
        "4",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, [*BASE, *args])
    assert result.exit_code == 0, result.output
    defense = json.loads((tmp_path / "config.json").read_text())["defense"]
    assert defense["stochastic_rounding"] is False and defense["quantize_bits"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["engine"] == "inline"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dropout", "0.3"], "--dropout does not apply to --defense none, which takes no settings"),
        (
            ["--defense", "quantize", "--accountant", "prv"],
            "--accountant does not apply to --defense quantize, which takes --quantize-bits, --stochastic-rounding",
        ),
        (
            ["--defense", "dp-local", "--clipping-norm", "2"],
            "--clipping-norm does not apply to --defense dp-local, which takes --noise-multiplier, "
            "--target-epsilon, --delta, --max-grad-norm, --accountant",
        ),
    ],
)
def test_federation_simulate_refuses_a_setting_its_defense_does_not_read(tmp_path, args, message):
    """``--dropout 0.3`` without ``--defense dropout`` would train without dropout: one usage line."""
    result = CliRunner().invoke(cli, [*BASE, *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "config.json").exists()


def test_federation_simulate_model_options_build_the_federated_model(tmp_path):
    from fl.federation.capture import CaptureStore

    args = [
        "--rounds",
        "1",
        "--model-option",
        "bias=true",
        "--model-option",
        "hidden=16",
        "--capture",
        "all",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, [*BASE, *args])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "config.json").read_text())["model_options"] == {"bias": True, "hidden": 16}
    store = CaptureStore(tmp_path)
    weights = store.load(1, store.clients(1)[0]).weights_before
    assert weights["1.bias"].shape == (16,) and weights["1.weight"].shape[0] == 16


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("dropout=0.5", "--model-option dropout=... is set by --dropout"),
        ("colour=red", "colour"),
        ("bias", "is not KEY=VALUE"),
    ],
)
def test_federation_simulate_bad_model_option_is_one_line_exit_2(tmp_path, option, message):
    result = CliRunner().invoke(cli, [*BASE, "--model-option", option, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_federation_simulate_bad_accountant_is_one_line_exit_2(tmp_path):
    result = CliRunner().invoke(cli, [*BASE, "--defense", "dp-local", "--accountant", "gdp", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "accountant='gdp' is invalid; expected one of rdp, prv" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("seed", "rounds", "k"), [(0, 5, 2), (3, 4, 1), (1, 2, 3)])
def test_federation_planned_rounds_count_each_clients_samples(seed, rounds, k):
    planned = planned_rounds(seed, rounds, 3, k)
    assert sum(planned.values()) == rounds * k
    for client, count in planned.items():
        assert count == sum(client in sample_clients(seed, r, 3, k) for r in range(1, rounds + 1))


def test_federation_dp_local_target_epsilon_is_spent_by_the_last_planned_round(tmp_path):
    args = ["--rounds", "2", "--defense", "dp-local", "--target-epsilon", "4", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*BASE, *args])
    assert result.exit_code == 0, result.output
    eps = [h["epsilon"] for h in json.loads((tmp_path / "result.json").read_text())["history"]]
    assert eps[0] < 3.0  # half the steps spend well under the budget
    assert 3.9 <= eps[1] <= 4.0  # the whole budget, never more, after the planned rounds
    assert f"ε {eps[1]:.2f} per record (δ=1e-05)" in result.output
    assert "Warning" not in result.output  # library warnings stay out of the default output


def test_federation_simulate_baseline_reports_the_utility_cost_against_none(tmp_path):
    result = CliRunner().invoke(
        cli, [*BASE, "--rounds", "1", "--defense", "prune", "--baseline", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    base = json.loads((tmp_path / "baseline" / "result.json").read_text())
    own = json.loads((tmp_path / "result.json").read_text())
    assert json.loads((tmp_path / "baseline" / "config.json").read_text())["defense"]["name"] == "none"
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "compare.md").read_text().splitlines()[2:]}
    assert set(rows) == {"none", "prune"}
    assert f"| {base['final_accuracy']:.4f} | +0.0000 |" in rows["none"]
    assert f"| {own['final_accuracy']:.4f} | {own['final_accuracy'] - base['final_accuracy']:+.4f} |" in rows["prune"]


def test_federation_simulate_attack_options_reach_the_curious_servers_attack(tmp_path):
    args = [
        "--rounds",
        "1",
        "--local-steps",
        "1",
        "--attack",
        "ig",
        "--attack-iters",
        "2",
        "--attack-option",
        "layer_weights=balanced",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, [*BASE, *args])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "config.json").read_text())["attack_options"] == {"layer_weights": "balanced"}
    history = json.loads((tmp_path / "result.json").read_text())["history"]
    assert history[0]["attack"] == "ig" and "attack_psnr" in history[0]


def test_federation_simulate_curious_server_recovers_batch_one_clients_analytically(tmp_path):
    """Phong et al.: a client that trains one example on an MLP with a first-layer bias gives its
    input away exactly to a server that divides a weight-gradient row by its bias entry."""
    args = [
        "--rounds",
        "1",
        "--client-examples",
        "1",
        "--batch-size",
        "1",
        "--local-steps",
        "1",
        "--model-option",
        "bias=true",
        "--attack",
        "analytic",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(cli, [*BASE[:-2], *args])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "result.json").read_text())["history"]
    assert history[0]["attack"] == "analytic" and history[0]["attack_psnr"] > 60, history[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack-option", "layer_weights=balanced"], "attack setting 'layer_weights' needs an --attack"),
        (["--attack", "ig", "--attack-option", "iters=5"], "--attack-option iters=... is set by --attack-iters"),
        (["--attack", "dia", "--attack-option", "tv=1"], "no attack has the setting 'tv'; valid settings:"),
        (["--attack", "ig", "--attack-option", "layer_weights=all"], "layer_weights 'all' is not one of"),
    ],
)
def test_federation_simulate_bad_attack_option_is_one_line_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(cli, [*BASE, *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_federation_dp_local_client_with_an_empty_poisson_batch_is_attacked_but_not_scored(tmp_path):
    """Rate 1/2 over 2 records: client 3's one Poisson batch is empty under this secret; its update is
    noise only, so nothing can be scored, and the round says which clients went unscored."""
    secret = tmp_path / "secret"
    secret.write_text(f"{2:032x}\n")
    args = [
        "--rounds",
        "1",
        "--clients",
        "4",
        "--client-examples",
        "2",
        "--batch-size",
        "1",
        "--local-steps",
        "1",
        "--defense",
        "dp-local",
        "--noise-multiplier",
        "1.0",
        "--attack",
        "ig",
        "--attack-clients",
        "4",
        "--attack-iters",
        "2",
        "--client-secret-file",
        str(secret),
        "--out",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(cli, [*BASE[:-2], *args])
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "run" / "result.json").read_text())["history"]
    assert record["attack_unscored"] == ["3"] and sorted(record["attack_scores"]) == ["0", "1", "2"]
    assert record["privacy"]["clients"]["3"]["steps"] == [1]  # the empty batch was still a (noise-only) step


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--local-epochs", "2"],
            "8 local steps of batch 8 over 26 examples make several passes, reshuffled each time",
        ),
        (["--local-epochs", "1"], "a client with 26 examples and batch 8 trains a last batch of 2"),
        (["--local-steps", "5"], "5 local steps of batch 8 over 26 examples make several passes"),
    ],
)
def test_federation_attack_on_updates_the_replay_cannot_model_is_refused_before_the_run(tmp_path, args, message):
    """Several reshuffled epochs, or a partial last batch, are not what the inversion replays: refused in one line."""
    result = CliRunner().invoke(cli, [*BASE[:-2], "--batch-size", "8", "--attack", "ig", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "config.json").exists()


def test_every_defense_names_the_settings_it_reads() -> None:
    """DEFENSE_SETTINGS has one row per registered defense, and every DefenseConfig setting is read
    by some defense (a new setting or defense that forgets its row is caught here)."""
    from defenses import DEFENSES
    from defenses.config import DEFENSE_SETTINGS

    assert sorted(DEFENSE_SETTINGS) == sorted(DEFENSES.names())
    read = {s for names in DEFENSE_SETTINGS.values() for s in names}
    assert read | {"name"} == {f.name for f in fields(DefenseConfig)}
