"""``fedleak compare``, ``report`` through click's CliRunner: runs, resumes, clean one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.cli import cli
from experiments.grid import CELL_KINDS, expand, load_scenario, shipped_scenarios


@pytest.fixture
def toy_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr("experiments.cli.compare.CELL_KINDS", toy_kinds())
    path = tmp_path / "toy.toml"
    path.write_text(TOY_SCENARIO)
    return path


def test_compare_runs_then_resumes_and_report_renders(toy_cli: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(cli, ["-q", "--device", "cpu", "compare", str(toy_cli), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "6 cells: 0 already done, 6 run now, 0 failed" in result.output
    assert (out / "config.json").is_file() and (out / "env.json").is_file()
    again = runner.invoke(cli, ["-q", "compare", str(toy_cli), "--out", str(out)])
    assert "6 cells: 6 already done, 0 run now" in again.output
    listing = runner.invoke(cli, ["compare", str(toy_cli), "--out", str(out), "--list"])
    assert listing.output.count("| done |") == 6
    md = runner.invoke(cli, ["report", str(out)])
    assert md.exit_code == 0 and "### At what utility cost" in md.output
    assert (out / "plots" / "privacy_utility.png").is_file()
    latex = runner.invoke(cli, ["report", str(out), "--format", "latex"])
    assert "\\begin{table}" in latex.output
    page = runner.invoke(cli, ["report", str(out), "--format", "html"])
    assert page.exit_code == 0 and (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_other_scenario_in_the_same_folder_is_refused(toy_cli: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "run"
    runner.invoke(cli, ["-q", "compare", str(toy_cli), "--out", str(out)])
    other = tmp_path / "other.toml"
    other.write_text(TOY_SCENARIO.replace('name = "toy"', 'name = "other"'))
    result = runner.invoke(cli, ["-q", "compare", str(other), "--out", str(out)])
    assert result.exit_code == 2 and "holds results of scenario 'toy', not 'other'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "nope"], "unknown scenario 'nope'; valid choices: dia-paper, federated, full, mia, quick"),
        (["compare", "missing.toml"], "scenario file 'missing.toml' does not exist"),
        (["report", "."], "holds no results.sqlite"),
        (["compare", "quick", "--jobs", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_scenario_file_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[inversion]\ndatasets = ["sample"]\nmodels = ["mlp"]\nattacks = ["ig", "magic"]\n')
    result = CliRunner().invoke(cli, ["compare", str(path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert line.startswith(f"Error: scenario {path}: unknown attack 'magic' in inversion.attacks; valid choices: ")
    assert all(name in line for name in ("dlg", "idlg", "ig", "dia", "oracle"))
    assert not (tmp_path / "x").exists()


def test_shipped_scenarios_expand_against_the_real_configs() -> None:
    assert shipped_scenarios() == ["dia-paper", "federated", "full", "mia", "quick"]
    sizes = {name: len(expand(load_scenario(name), kinds=CELL_KINDS)) for name in shipped_scenarios()}
    assert sizes["quick"] == 10 and sizes["dia-paper"] == 8 and sizes["full"] > 50
    quick = expand(load_scenario("quick"), kinds=CELL_KINDS)
    inv = {c.setting: c.typed for c in quick if c.kind == "inversion"}
    assert inv["-"].attacks == ("ig",) and inv["-"].dropout == 0.0  # DIA needs dropout: p = 0 runs IG only
    assert inv["dropout=0.25"].attacks == ("ig", "dia") and inv["dropout=0.25"].dropout == 0.25
    mia = {(c.defense, c.typed.federated): c for c in quick if c.kind == "membership"}
    assert sorted(mia) == [("dp", False), ("dp", True), ("none", False), ("none", True)]
    dp = mia["dp", False].typed.defense
    assert dp.name == "dp-local" and dp.target_epsilon == 8.0 and dp.max_grad_norm == 1.0
    fed_mia = mia["dp", True]  # the demo's membership cell on a federation's global model
    assert fed_mia.typed.clients == 4 and fed_mia.typed.defense.name == "dp-local"
    assert fed_mia.setting == "global model of 4 clients, target_epsilon=8.0"
    fed = sorted((c.defense, c.typed.attack) for c in quick if c.kind == "federated")
    assert fed == [("dp", "ig"), ("dropout", "dia"), ("dropout", "ig"), ("none", "ig")]  # the demo's federation


def test_list_shows_the_attacks_each_cell_runs(tmp_path: Path) -> None:
    listing = CliRunner().invoke(cli, ["compare", "quick", "--out", str(tmp_path / "q"), "--list"])
    assert listing.exit_code == 0, listing.output
    rows = [ln.split(" | ") for ln in listing.output.splitlines() if "| inversion |" in ln]
    assert sorted((r[4], r[6]) for r in rows) == [("ig", "-"), ("ig,dia", "dropout=0.25")]
    assert not (tmp_path / "q").exists()


def test_a_dia_with_options_is_named_in_the_report(tmp_path: Path) -> None:
    """A scenario that sets mask_readout and layer_weights reports 'dia (readout; balanced)' and
    'ig (balanced)', not plain 'dia' and 'ig'."""
    path = tmp_path / "readout.toml"
    path.write_text(
        '[scenario]\nname = "readout"\nseeds = [0]\n[defenses.dropout]\ndropout = [0.25]\n'
        '[[inversion]]\ndatasets = ["sample"]\nmodels = ["mlp"]\nattacks = ["ig", "dia"]\ndefenses = ["dropout"]\n'
        "budget = { iterations = 2, images = 1 }\n"
        'options = { mask_readout = true, layer_weights = "balanced", model_options = { hidden = 32, depth = 2 } }\n'
    )
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(cli, ["-q", "--device", "cpu", "compare", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = runner.invoke(cli, ["report", str(out)])
    assert report.exit_code == 0, report.output
    header = next(line for line in report.output.splitlines() if line.startswith("| Dataset"))
    assert "| ig (balanced) PSNR (dB) |" in header and "| dia (readout; balanced) PSNR (dB) |" in header


@pytest.mark.parametrize(
    ("block", "needle"),
    [
        (
            '[membership]\ndatasets = ["sample-fmnist"]\nmodels = ["mlp"]\nattacks = ["loss"]\n'
            "budget = { pool = 500 }\n",
            "membership cell sample-fmnist/mlp (none): pool_size 500 + population_size 0 exceeds the 100 records",
        ),
        (
            '[defenses.dropout]\ndropout = [0.25]\n[inversion]\ndatasets = ["sample"]\nmodels = ["mlp"]\n'
            'attacks = ["ig"]\ndefenses = ["dropout"]\nbudget = { images = 200 }\n',
            "inversion cell sample/mlp (dropout dropout=0.25): index 199 is past the end of sample test",
        ),
    ],
)
def test_cells_the_data_cannot_serve_stop_the_run_before_any_cell(tmp_path: Path, block: str, needle: str) -> None:
    path = tmp_path / "big.toml"
    path.write_text('[scenario]\nname = "big"\nseeds = [0]\n' + block)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["-q", "--device", "cpu", "compare", str(path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert not out.exists()


FEDERATION_DEMO = """
[scenario]
name = "tiny-federation"
seeds = [0]

[defenses.dropout]
dropout = [0.25]

[[federated]]
datasets = ["sample"]
models = ["mlp"]
attacks = ["dia"]
defenses = ["dropout"]
budget = { rounds = 1, clients = 2, client_examples = 4, attack_iterations = 10, attack_clients = 1 }
options = { local_steps = 1, batch_size = 4, lr = 0.1 }

[[membership]]
datasets = ["sample-fmnist"]
models = ["2nn"]
attacks = ["loss"]
defenses = ["none"]
budget = { shadow_models = 0, pool = 40, bootstrap = 0 }
options = { clients = 2, rounds = 2, batch_size = 8 }
"""


def test_demo_output_holds_the_federation_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fedleak demo` on the quick scenario's kinds of federated cells (kept tiny): the curious
    server's inversion row and the membership row of a federation's global model are printed."""
    monkeypatch.setenv("FEDLEAK_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.toml"
    path.write_text(FEDERATION_DEMO)
    result = CliRunner().invoke(
        cli, ["-q", "--device", "cpu", "demo", "--scenario", str(path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    fed = out[out.index("### Curious server in a federation") :]
    assert "| sample | mlp | dropout | dropout=0.25 |" in fed and "dia PSNR (dB)" in fed
    mia = out[out.index("### Which defense stops which attack: membership inference") :]
    assert "| sample-fmnist | 2nn | none | global model of 2 clients |" in mia
    assert (tmp_path / "o" / "report.html").is_file()
