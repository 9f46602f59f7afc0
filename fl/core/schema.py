"""Config fields that describe themselves: one place for a setting's default, help text and choices.

A frozen config dataclass declares each user-facing setting with :func:`setting`; :func:`settings_of`
reads them back as :class:`Setting` rows, from which the command line, the scenario keys and the
Flower run config are generated (``experiments/cli/schema.py``, ``experiments/flower/run_config.py``),
so a new setting is one field.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


def setting(
    default: Any = MISSING,
    *,
    help: str,
    factory: Any = None,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    key: str | None = None,
    cli: bool = True,
    app: bool = True,
) -> Any:
    """A dataclass field with its help text; ``choices`` the valid values (checked by the command
    line before the config sees them), ``flag`` and ``key`` a command-line flag and a scenario /
    run-config key other than the field's name, ``cli=False`` for a setting the command line sets
    otherwise, ``app=False`` for one the Flower App's run config does not take (how a local run
    executes)."""
    metadata = {"help": help, "choices": choices, "flag": flag, "key": key, "cli": cli, "app": app}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Setting:
    """One described field of a config class."""

    name: str  # the field's name
    owner: type  # the config class holding it
    kind: type  # int, float, str, bool, dict or tuple
    optional: bool  # None is a valid value (unset)
    default: Any
    help: str
    choices: tuple[str, ...] | None
    flag: str  # the command-line flag, e.g. --local-steps
    key: str  # the scenario / Flower run-config key, e.g. local-steps
    cli: bool  # a command-line option
    app: bool  # a key of the Flower App's run config


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The described fields of ``cls`` in declaration order (fields without help are not settings)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        kind, optional = _kind(hints[f.name])
        out.append(
            Setting(
                name=f.name,
                owner=cls,
                kind=kind,
                optional=optional,
                default=_default(f),
                help=f.metadata["help"],
                choices=f.metadata["choices"],
                flag=f.metadata["flag"] or "--" + f.name.replace("_", "-"),
                key=f.metadata["key"] or f.name.replace("_", "-"),
                cli=f.metadata["cli"],
                app=f.metadata["app"],
            )
        )
    return tuple(out)


def _kind(hint: Any) -> tuple[type, bool]:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    base = typing.get_origin(hint) or hint
    if optional and len(args) == 1:
        base = typing.get_origin(args[0]) or args[0]
    return base, optional


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"setting {f.name!r} has no default")
