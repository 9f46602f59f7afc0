"""Scenario files: a TOML grid of datasets x models x defenses x seeds per cell kind.

A scenario declares, per kind (``[inversion]``, ``[membership]``, ``[federated]``, each a
table or an array of tables), the datasets, models and attacks, the defenses it crosses
(names of ``[defenses.NAME]`` tables, whose list-valued options are grid axes) and its
budgets. Every key is checked here: unknown keys, wrong types and empty lists fail with one
line naming the key and the value (see ``docs/experiments.md`` for the format).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fl.core.errors import ConfigError

KINDS = ("inversion", "membership", "federated")
SCENARIO_KEYS = ("name", "description", "seeds")
BLOCK_KEYS = ("datasets", "models", "attacks", "defenses", "budget", "options")
NO_DEFENSE = "none"


@dataclass(frozen=True)
class DefenseGrid:
    """One ``[defenses.NAME]`` table: fixed options and the list-valued ones (grid axes)."""

    label: str  # the table name, shown in reports
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """One kind section: every dataset x model x defense setting x seed is a cell."""

    kind: str  # inversion | membership | federated
    where: str  # "inversion" or "inversion[1]" for error messages
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    attacks: tuple[str, ...]  # every attack runs inside each cell (they share victims/targets)
    defenses: tuple[str, ...] = (NO_DEFENSE,)  # names of [defenses.NAME] tables ("none" is built in)
    budget: dict[str, Any] = field(default_factory=dict)  # iterations, images, shadow_models, rounds, ...
    options: dict[str, Any] = field(default_factory=dict)  # any other field of the kind's config


@dataclass(frozen=True)
class Scenario:
    """A parsed, validated scenario file."""

    name: str
    description: str
    seeds: tuple[int, ...]
    defenses: dict[str, DefenseGrid]
    blocks: tuple[Block, ...]
    source: str  # the TOML text, stored with the results
    origin: str  # shipped name or file path


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``experiments/scenarios``."""
    root = resources.files("experiments") / "scenarios"
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path, *, kinds: Sequence[str] = KINDS) -> Scenario:
    """Load a shipped scenario by name or a TOML file by path."""
    text_path = Path(name_or_path)
    if text_path.suffix == ".toml" or text_path.exists():
        if not text_path.is_file():
            raise ConfigError(f"scenario file {str(text_path)!r} does not exist")
        return parse_scenario(text_path.read_text(encoding="utf-8"), origin=str(text_path), kinds=kinds)
    shipped = shipped_scenarios()
    if str(name_or_path) not in shipped:
        raise ConfigError(
            f"unknown scenario {str(name_or_path)!r}; valid choices: {', '.join(shipped)} or a path to a .toml file"
        )
    text = (resources.files("experiments") / "scenarios" / f"{name_or_path}.toml").read_text(encoding="utf-8")
    return parse_scenario(text, origin=str(name_or_path), kinds=kinds)


def parse_scenario(text: str, *, origin: str = "<string>", kinds: Sequence[str] = KINDS) -> Scenario:
    """Parse and validate scenario TOML text; ``kinds`` are the section names that declare cells."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario {origin}: invalid TOML: {exc}") from None
    _check_keys(data, ("scenario", "defenses", *kinds), "the top level", origin)
    head = data.get("scenario", {})
    _expect(isinstance(head, dict), "scenario", head, "a table", origin)
    _check_keys(head, SCENARIO_KEYS, "[scenario]", origin)
    name = head.get("name", Path(origin).stem)
    _expect(isinstance(name, str) and name, "scenario.name", name, "a non-empty string", origin)
    description = head.get("description", "")
    _expect(isinstance(description, str), "scenario.description", description, "a string", origin)
    seeds = tuple(_list_of(head.get("seeds", [0]), int, "scenario.seeds", origin))

    defenses = {NO_DEFENSE: DefenseGrid(label=NO_DEFENSE, fixed={"name": NO_DEFENSE})}
    table = data.get("defenses", {})
    _expect(isinstance(table, dict), "defenses", table, "a table of [defenses.NAME] tables", origin)
    for label, opts in table.items():
        defenses[label] = _defense_grid(label, opts, origin)

    blocks: list[Block] = []
    for kind in kinds:
        if kind not in data:
            continue
        raw = data[kind]
        items = raw if isinstance(raw, list) else [raw]
        for i, item in enumerate(items):
            where = kind if not isinstance(raw, list) else f"{kind}[{i}]"
            blocks.append(_block(kind, where, item, defenses, origin))
    if not blocks:
        raise ConfigError(
            f"scenario {origin} declares no cells; add one of the sections {', '.join(f'[{k}]' for k in kinds)}"
        )
    return Scenario(
        name=name,
        description=description,
        seeds=seeds,
        defenses=defenses,
        blocks=tuple(blocks),
        source=text,
        origin=origin,
    )


def _defense_grid(label: str, opts: Any, origin: str) -> DefenseGrid:
    where = f"defenses.{label}"
    _expect(isinstance(opts, dict), where, opts, "a table of defense options", origin)
    fixed: dict[str, Any] = {"name": label}
    axes: dict[str, tuple[Any, ...]] = {}
    for key, value in opts.items():
        if isinstance(value, list):
            if not value:
                raise ConfigError(f"scenario {origin}: {where}.{key} is empty; the grid would have no cells")
            axes[key] = tuple(value)
        else:
            fixed[key] = value
    return DefenseGrid(label=label, fixed=fixed, axes=axes)


def _block(kind: str, where: str, item: Any, defenses: dict[str, DefenseGrid], origin: str) -> Block:
    _expect(isinstance(item, dict), where, item, "a table", origin)
    _check_keys(item, BLOCK_KEYS, f"[{where}]", origin)
    for key in ("datasets", "models", "attacks"):
        if key not in item:
            raise ConfigError(f"scenario {origin}: [{where}] needs the key {key!r}")
    names = {
        key: tuple(_list_of(item.get(key, [NO_DEFENSE]), str, f"{where}.{key}", origin))
        for key in ("datasets", "models", "attacks", "defenses")
    }
    for label in names["defenses"]:
        if label not in defenses:
            valid = ", ".join(defenses)
            raise ConfigError(
                f"scenario {origin}: {where}.defenses names {label!r}, which has no [defenses.{label}] table;"
                f" valid choices: {valid}"
            )
    budget = item.get("budget", {})
    options = item.get("options", {})
    _expect(isinstance(budget, dict), f"{where}.budget", budget, "a table", origin)
    _expect(isinstance(options, dict), f"{where}.options", options, "a table", origin)
    return Block(
        kind=kind,
        where=where,
        datasets=names["datasets"],
        models=names["models"],
        attacks=names["attacks"],
        defenses=names["defenses"],
        budget=dict(budget),
        options=dict(options),
    )


def _list_of(value: Any, typ: type, key: str, origin: str) -> list[Any]:
    if isinstance(value, typ) and not isinstance(value, bool):
        value = [value]
    _expect(isinstance(value, list), key, value, f"a list of {typ.__name__}", origin)
    if not value:
        raise ConfigError(f"scenario {origin}: {key} is empty; the grid would have no cells")
    for v in value:
        ok = isinstance(v, typ) and not isinstance(v, bool)
        _expect(ok, key, v, f"a list of {typ.__name__}", origin)
    if len(set(value)) != len(value):
        raise ConfigError(f"scenario {origin}: {key} lists a value twice: {value!r}")
    return value


def _check_keys(table: dict[str, Any], valid: tuple[str, ...], where: str, origin: str) -> None:
    for key in table:
        if key not in valid:
            raise ConfigError(f"scenario {origin}: unknown key {key!r} in {where}; valid keys: {', '.join(valid)}")


def _expect(ok: bool, key: str, value: Any, expected: str, origin: str) -> None:
    if not ok:
        shown = "inf" if isinstance(value, float) and math.isinf(value) else repr(value)
        raise ConfigError(f"scenario {origin}: {key} = {shown} has the wrong type; expected {expected}")
