"""Bad defense options on the command line: one line, exit status 2, before any federation starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments.cli import cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--defense", "dp-local", "--delta", "1.5"], "delta=1.5"),
        (["--defense", "dp-central", "--clipping", "sometimes"], "clipping='sometimes'"),
        (["--defense", "prune", "--prune-ratio", "1.0"], "prune_ratio=1.0"),
        (["--defense", "ldp", "--epsilon", "0"], "epsilon=0.0"),
        (["--defense", "tinfoil"], "unknown defense 'tinfoil'; valid choices: "),
    ],
)
def test_defenses_cli_bad_option_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = CliRunner().invoke(cli, ["simulate", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0]  # click's usage hint may precede it
    assert "Traceback" not in result.output
