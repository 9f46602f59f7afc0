"""The CLI root: help, version, global options, bad input."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from experiments.cli import cli
from fl import __version__


def test_help_lists_commands_and_global_options() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for text in ("--device", "--seed", "--verbose", "--quiet", "models"):
        assert text in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_models_lists_every_model_with_parameter_counts() -> None:
    result = CliRunner().invoke(cli, ["models", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("model,")
    assert {line.split(",")[0] for line in lines[1:]} == {"2nn", "convnet", "lenet", "mlp", "resnet18", "vit"}
    assert '"1,615,626"' in result.output  # the small ViT on CIFAR-10 (1.6 M)
    assert '2nn,"199,210"' in result.output  # FedAvg's MNIST 2NN (McMahan et al., 2017: 199,210 parameters)


def test_unknown_device_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--device", "tpu", "models"])
    assert result.exit_code == 2
    assert "auto" in result.output and "cuda" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_one_clear_line() -> None:
    from experiments.cli.state import CliState

    with pytest.raises(Exception, match="no CUDA device is available"):
        _ = CliState(device_name="cuda").device


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output


@pytest.mark.parametrize("args", [["--seed", "-1", "datasets", "show", "sample"], ["invert", "--seed", "-1"]])
def test_negative_seed_is_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output and "Traceback" not in result.output


def test_same_seed_same_results_on_cpu(tmp_path) -> None:
    """Two runs with one seed give bit-identical reconstructions (initial weights, dropout masks,
    attack init); another seed gives different ones."""
    from fl.core.runs import load_tensors

    def run(seed: int, name: str) -> dict[str, torch.Tensor]:
        args = [
            "--device",
            "cpu",
            "-q",
            "--seed",
            str(seed),
            "invert",
            "--dataset",
            "sample",
            "--attack",
            "ig,dia",
            "--model-option",
            "hidden=32",
            "--index",
            "0..1",
            "--iters",
            "3",
            "--out",
            str(tmp_path / name),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        return load_tensors(tmp_path / name / "reconstructions.safetensors")

    a, b, c = run(5, "a"), run(5, "b"), run(6, "c")
    assert set(a) == {"truth", "ig", "dia"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["dia"], c["dia"])


def test_help_short_texts_match_the_commands() -> None:
    import click

    from experiments.cli import COMMANDS

    ctx = click.Context(cli)
    for name, (_, _, short) in COMMANDS.items():
        assert cli.get_command(ctx, name).get_short_help_str(limit=300) == short, name


def test_help_and_version_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from experiments.cli import cli\n"
        "for args in (['--help'], ['--version']):\n"
        "    try: cli(args, prog_name='fedleak')\n"
        "    except SystemExit as e: assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "fedleak, version" in result.stdout
