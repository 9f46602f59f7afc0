"""Scenario files: validation errors are one line naming the key and value."""

from __future__ import annotations

import pytest
from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.grid import CELL_KINDS, expand, parse_scenario
from fl.core.errors import ConfigError

KINDS = toy_kinds()


def _expand(text: str):
    return expand(parse_scenario(text, origin="bad.toml", kinds=KINDS.names()), kinds=KINDS)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[toy]", "[toy]\nmodes = ['x']"), "unknown key 'modes' in [toy]; valid keys: datasets"),
        (('name = "toy"', 'name = "toy"\nseed = 1'), "unknown key 'seed' in [scenario]"),
        (("seeds = [0, 1]", 'seeds = ["zero"]'), "scenario.seeds = 'zero' has the wrong type; expected a list of int"),
        (('models = ["mlp"]', "models = []"), "toy.models is empty; the grid would have no cells"),
        (("dropout = [0.25, 0.5]", "dropout = []"), "defenses.dropout.dropout is empty"),
        (
            ('attacks = ["ig", "dia"]', 'attacks = ["ig", "magic"]'),
            "unknown attack 'magic' in toy.attacks; valid choices: ig, dia, loss",
        ),
        (
            ('defenses = ["none", "dropout"]', 'defenses = ["none", "dp"]'),
            "toy.defenses names 'dp', which has no [defenses.dp] table",
        ),
        (("[defenses.dropout]", "[defenses.dropout]\nname = 'shield'"), "unknown defense 'shield' in defenses.dropout"),
        (
            ("dropout = [0.25, 0.5]", "dropout = [0.25, 1.5]"),
            "defenses.dropout: dropout=1.5 is invalid; expected a value",
        ),
        (
            ("iterations = 5", "iterations = 'many'"),
            "toy.iters = 'many' has the wrong type; expected an integer (toy.budget.iterations sets 'iters')",
        ),
        (("iterations = 5", "steps = 5"), "unknown key 'steps' in toy.budget; valid keys: iterations"),
        (
            ("iterations = 5", "iterations = 0"),
            "toy: iters=0 is invalid; expected >= 1 (toy.budget.iterations sets 'iters')",
        ),
        (("[toy]", "[toy]\noptions = { colour = 1 }"), "toy: unknown setting 'colour'; valid settings: dataset"),
        (("[scenario]", "[scenario\n"), "invalid TOML"),
    ],
)
def test_bad_scenarios_fail_with_one_clear_line(edit: tuple[str, str], message: str) -> None:
    text = TOY_SCENARIO.replace(*edit, 1)
    assert text != TOY_SCENARIO
    with pytest.raises(ConfigError) as info:
        _expand(text)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text


def test_scenario_without_cells_and_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"declares no cells; add one of the sections \[toy\]"):
        _expand('[scenario]\nname = "empty"\n')
    with pytest.raises(ConfigError, match="unknown key 'invert' in the top level"):
        _expand(TOY_SCENARIO + "\n[invert]\n")


def test_array_of_blocks_and_scalar_shorthands() -> None:
    text = """
[scenario]
seeds = 3
[[toy]]
datasets = "a"
models = "m"
attacks = "ig"
[[toy]]
datasets = ["b"]
models = ["m"]
attacks = ["dia"]
budget = { iterations = 2 }
"""
    scenario = parse_scenario(text, kinds=KINDS.names())
    assert [b.where for b in scenario.blocks] == ["toy[0]", "toy[1]"]
    cells = expand(scenario, kinds=KINDS)
    assert [(c.dataset, c.seed, c.typed.iters) for c in cells] == [("a", 3, 10), ("b", 3, 2)]


def test_a_federated_cell_cannot_carry_the_clients_secret() -> None:
    """A cell's folder is its federation's run folder, the server's side: no secret may be written there."""
    text = """
[scenario]
name = "s"
[[federated]]
datasets = ["sample"]
models = ["mlp"]
attacks = ["none"]
options = { client_secret = "00112233445566778899aabbccddeeff" }
"""
    with pytest.raises(ConfigError, match=r"federated\[0\]: a scenario cannot give the clients' secret"):
        expand(parse_scenario(text), kinds=CELL_KINDS)
