"""One schema per kind of run: the command's options, the scenario keys and the config come from it."""

from __future__ import annotations

import re
from dataclasses import fields

import click
import pytest

from experiments.grid.kinds import CELL_KINDS
from fl.core.errors import ConfigError


def _kinds() -> list[tuple[str, click.Command, set[str]]]:
    """(grid kind, its command, the command's own options that are not settings)."""
    from experiments.cli.invert import invert
    from experiments.cli.simulate import simulate

    return [
        ("federated", simulate, {"baseline", "client_secret_file", "resume", "export_partitions", "out"}),
        ("inversion", invert, {"data_dir", "out", "resume", "device_name", "seed", "fmt"}),
    ]


@pytest.mark.parametrize("kind", ["federated", "inversion"])
def test_command_options_are_the_schemas_settings(kind: str) -> None:
    """One option per command-line setting, unset by default (the config's default applies), and
    nothing else but the command's own run options."""
    name, command, own = next(k for k in _kinds() if k[0] == kind)
    schema = CELL_KINDS.get(name).schema()
    options = {p.name: p for p in command.params}
    assert set(options) == {s.name for s in schema.settings if s.cli} | own
    for s in schema.settings:
        if s.cli:
            option = options[s.name]
            assert s.flag in option.opts, s.name
            assert option.multiple or option.default is None, s.name
            assert s.help.split(".")[0] in (option.help or ""), s.name


@pytest.mark.parametrize("kind", ["federated", "inversion", "membership"])
def test_scenario_options_are_the_schemas_settings(kind: str) -> None:
    """Every setting is a scenario key (its default accepted as given), an unknown key fails in one
    line naming the valid ones, and a value of the wrong type names its key."""
    schema = CELL_KINDS.get(kind).schema()
    defaults = {s.name: s.default for s in schema.settings if s.default is not None}
    config = schema.build(defaults, where=f"{kind}[0]")
    assert config == schema.build({}), "a default given explicitly must equal the unset default"
    with pytest.raises(ConfigError, match=rf"^{kind}\[0\]: unknown setting 'colour'; valid settings: \w+"):
        schema.build({"colour": 1}, where=f"{kind}[0]")
    first = next(s for s in schema.settings if s.kind is int)
    with pytest.raises(ConfigError, match=rf"{kind}\[0\]\.{first.name} = 'x' has the wrong type"):
        schema.build({first.name: "x"}, where=f"{kind}[0]")


def test_mia_options_are_the_membership_schemas_settings() -> None:
    """``fedleak mia`` has one option per command-line setting of the black-box audit's schema (the
    membership kind's) and of the server-side audit's (a setting of both is one option, one flag),
    unset by default, and nothing else but its own run options and the two settings it sets by an
    option of another shape (``--client``, ``--lira-variance``)."""
    from experiments.cli.mia import mia
    from experiments.membership.schema import membership_schema, mia_settings, server_side_schema

    black_box, server = membership_schema(), server_side_schema()
    assert CELL_KINDS.get("membership").schema() is black_box
    options = {p.name: p for p in mia.params}
    shown = [s for s in mia_settings() if s.cli]
    own = {"run_dir", "attacked_clients", "lira_variance", "secret_file", "data_dir", "cache_dir", "out", "fmt"}
    assert set(options) == {s.name for s in shown} | own
    for s in shown:
        option = options[s.name]
        assert option.multiple or option.default is None, s.name
        assert s.help.split(".")[0] in (option.help or ""), s.name
    for s in (*black_box.settings, *server.settings):
        if s.cli:
            assert s.flag in options[s.name].opts, s.name
    set_otherwise = {s.name: s.flag for s in (*black_box.settings, *server.settings) if not s.cli}
    assert set_otherwise == {
        "standardize": "--standardize",  # scenario keys only
        "weight_decay": "--weight-decay",
        "flip": "--flip",
        "fix_variance": "--fix-variance",  # --lira-variance fixed|per-example
        "seed": "--seed",  # the global --seed
        "clients": "--client",  # the server's clients: repeatable --client
    }
    assert options["attacked_clients"].opts == ["--client"] and options["attacked_clients"].multiple
    assert options["lira_variance"].opts == ["--lira-variance"]


def test_inversion_attack_settings_are_the_attack_configs_fields() -> None:
    """The inversion kind repeats no attack setting: each comes from an attack's config and reaches
    exactly the attacks that have it."""
    from attacks.inversion.base import ATTACKS, RUN_SETTINGS
    from experiments.inversion.config import InversionConfig, inversion_config, inversion_schema

    own = {f.name for f in fields(InversionConfig)}
    attack_fields = {f.name for a in ATTACKS.names() for f in fields(ATTACKS.get(a).Config)} - set(RUN_SETTINGS)
    assert attack_fields.isdisjoint(own)
    assert {s.name for s in inversion_schema().settings} == (own | attack_fields)
    cfg = inversion_config({"attacks": ("ig", "dia"), "mask_reg": 0.5, "tv_weight": 2e-4})
    assert cfg.attack_options == {"mask_reg": 0.5, "tv_weight": 2e-4}
    assert "mask_reg" not in cfg.attack_overrides("ig") and cfg.attack_overrides("dia")["mask_reg"] == 0.5
    typed = inversion_config({"attacks": ("ig",), "recipe": "ig", "attack_options": {"lr_decay_at": "0.5,0.75"}})
    assert typed.attack_overrides("ig")["lr_decay_at"] == (0.5, 0.75)


def test_federation_attack_settings_reach_the_curious_servers_attack() -> None:
    """``fedleak simulate --mask-reg`` (or a scenario's ``mask_reg``) is the attack's setting, as in
    ``fedleak invert``; one the attack does not have is refused in one line."""
    from experiments.federated.schema import simulation_config

    cfg = simulation_config({"attack": "dia", "attack_clients": 1, "mask_reg": 0.5, "attack_options": {"recipe": "ig"}})
    assert cfg.attack_options == {"recipe": "ig", "mask_reg": 0.5}
    with pytest.raises(ConfigError, match=r"^mask_reg applies to dia \(--mask-reg\); the chosen attack is ig$"):
        simulation_config({"attack": "ig", "attack_clients": 1, "mask_reg": 0.5})


@pytest.mark.parametrize("kind", ["federated", "inversion", "membership"])
def test_bounds_in_the_settings_refuse_a_value_just_outside_in_one_line(kind: str) -> None:
    """Every bounded setting of a kind (the attacks' included) refuses the nearest value outside its
    bounds in one line naming the setting, the value and its flag."""
    from attacks.inversion.base import takers

    schema = CELL_KINDS.get(kind).schema()
    bounded = [s for s in schema.settings if s.bounds is not None]
    assert len(bounded) >= 5, [s.name for s in bounded]
    for s in bounded:
        b = s.bounds
        assert b is not None
        step = 1 if s.kind is int else 0.5
        if b.low is not None:
            outside = b.low if b.low_open else b.low - step
        else:
            assert b.high is not None
            outside = b.high if b.high_open else b.high + step
        value = s.kind(outside)
        attack = next((a for a in takers(s.name) if a in ("dlg", "ig", "dia")), "dia")
        base: dict = {}
        if kind == "federated":
            base = {"attack": attack, "attack_clients": 1, "name": "dropout" if attack == "dia" else "dp-local"}
        if kind == "inversion":
            base = {"attacks": (attack,)}
        with pytest.raises(ConfigError) as err:
            schema.build({**base, s.name: value})
        message = str(err.value)
        assert f"{s.name}={value!r} is invalid; expected a value {b.text()} ({s.flag})" in message, message
        assert "\n" not in message


def test_membership_cells_take_their_defense_table_whole() -> None:
    """A membership cell's DefenseConfig is its table's (the accountant, adaptive clipping reach
    the target's training), and a table setting its defense does not read is refused in one line
    instead of labelling a run that did not use it."""
    from defenses import DEFENSES, DefenseConfig
    from experiments.grid.cells import defense_settings
    from experiments.grid.kinds.base import CellSpec
    from experiments.grid.scenario import DefenseGrid

    kind = CELL_KINDS.get("membership")

    def spec(defense: DefenseConfig, **options: float) -> CellSpec:
        return CellSpec("membership", "membership[0]", "sample", "mlp", ("loss",), defense, 0, options=options)

    local = DefenseConfig(name="dp-local", target_epsilon=2.0, accountant="prv", max_grad_norm=3.0)
    assert kind.build_config(spec(local)).defense == local
    central = DefenseConfig(name="dp-central", noise_multiplier=0.5, clipping="adaptive", target_quantile=0.7)
    assert kind.build_config(spec(central, clients=2)).defense == central
    table = DefenseGrid("dp", fixed={"name": "dp-local", "target_epsilon": 2.0, "prune_ratio": 0.5})
    message = (
        "defenses.dp: 'prune_ratio' is not a setting of the dp-local defense, which takes noise_multiplier, "
        "target_epsilon, delta, max_grad_norm, accountant"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        defense_settings(table, DEFENSES.names())
    # the empirical epsilon's delta of a cell without DP is an option; with DP it is the table's
    assert kind.build_config(spec(DefenseConfig(), delta=1e-6)).defense.delta == 1e-6
    with pytest.raises(ConfigError, match=r"options sets defense setting 'delta': give it in a \[defenses.NAME\]"):
        kind.build_config(spec(local, delta=1e-6))


def test_attack_option_texts_are_typed_alike_for_every_kind() -> None:
    """``--attack-option lr_decay_at=0.5,0.75`` is the tuple the attack's config takes, whether the
    run is a federation (simulate, the Flower run config) or an inversion experiment."""
    from experiments.federated.schema import simulation_config
    from experiments.inversion.config import inversion_config

    given = {"lr_decay_at": "0.5,0.75", "tv_weight": 1, "recipe": "ig"}
    sim = simulation_config({"attack": "ig", "attack_clients": 1, "attack_options": given})
    inv = inversion_config({"attacks": ("ig",), "attack_options": given})
    assert sim.attack_options == inv.attack_options == {"lr_decay_at": (0.5, 0.75), "tv_weight": 1.0, "recipe": "ig"}
    assert isinstance(sim.attack_options["tv_weight"], float)


@pytest.mark.parametrize(
    ("given", "line"),
    [
        (["--attack", "ig", "--mask-reg", "0.5"], "mask_reg applies to dia (--mask-reg); the chosen attack is ig"),
        (
            ["--attack", "dlg", "--attack-option", "bn_prior=0.01"],
            "bn_prior applies to ig, dia, oracle (--attack-option bn_prior=...); the chosen attack is dlg",
        ),
    ],
)
def test_an_attack_setting_no_chosen_attack_takes_is_one_line_alike_in_every_command(tmp_path, given, line) -> None:
    """``fedleak attack``, ``invert`` and ``simulate`` refuse it with the same usage error (exit 2),
    before reading a capture or training anything."""
    from click.testing import CliRunner

    from experiments.cli import cli

    commands = {
        "attack": ["attack", str(tmp_path)],
        "invert": ["invert", "--dataset", "sample", "--out", str(tmp_path / "invert")],
        "simulate": ["simulate", "--dataset", "sample", "--engine", "inline", "--out", str(tmp_path / "sim")],
    }
    for name, args in commands.items():
        res = CliRunner().invoke(cli, ["--device", "cpu", "-q", *args, *given])
        assert res.exit_code == 2, (name, res.output)
        assert [ln for ln in res.output.splitlines() if ln.startswith("Error:")] == [f"Error: {line}"], name
    assert list(tmp_path.iterdir()) == []


def test_an_attack_setting_names_every_chosen_attack_it_misses() -> None:
    from attacks.inversion.base import check_applies

    with pytest.raises(ConfigError, match=r"^mask_reg applies to dia \(--mask-reg\); the chosen attacks are ig, dlg$"):
        check_applies("mask_reg", ("ig", "dlg"))
    with pytest.raises(ConfigError, match=r"^no attack has the setting 'tv'; valid settings: min_bias_grad, "):
        check_applies("tv", ("ig",))
