"""Click options generated from described config fields (:mod:`fl.core.schema`).

Every option defaults to ``None`` (unset: the config's own default applies, and ``--help`` shows
it), so a command knows which settings the user gave. Choices are checked by click; every other
value by the config, in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import click

from experiments.cli.params import key_values
from fl.core.schema import Setting, value_text


def click_option(s: Setting) -> Callable[[Any], Any]:
    """The ``click.option`` of one setting."""
    if s.kind is dict:
        return click.option(s.flag, s.name, multiple=True, callback=key_values, metavar="KEY=VALUE", help=s.help)
    if s.kind is bool:
        shown = s.flag if s.default else f"--no-{s.flag[2:]}"
        return click.option(f"{s.flag}/--no-{s.flag[2:]}", s.name, default=None, help=f"{s.help}  [default: {shown}]")
    notes = ([] if s.default is None or s.default == () else [f"default: {value_text(s.default)}"]) + (
        [s.bounds.text()] if s.bounds is not None else []
    )
    shown = f"  [{'; '.join(notes)}]" if notes else ""
    if s.kind is tuple and s.item is str and s.parse is None:  # repeatable, or one comma list
        return click.option(s.flag, s.name, multiple=True, callback=_names(s), metavar=s.metavar, help=s.help + shown)
    if s.kind is tuple or s.parse is not None:
        return click.option(s.flag, s.name, default=None, callback=_parsed(s), metavar=s.metavar, help=s.help + shown)
    kind: Any = click.Choice(s.choices) if s.choices else s.kind
    return click.option(s.flag, s.name, type=kind, default=None, metavar=s.metavar, help=s.help + shown)


def click_options(settings: Iterable[Setting]) -> Callable[[Any], Any]:
    """A decorator adding one option per command-line setting, in order."""
    options = [click_option(s) for s in settings if s.cli]

    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def refuse_unread_defense_settings(
    values: Mapping[str, Any], settings: Iterable[Setting], *, always_read: Iterable[str] = ()
) -> None:
    """A usage error for a defense setting given on the command line that the chosen defense does
    not read (``--dropout 0.3`` without ``--defense dropout`` would train without dropout);
    ``always_read``: settings the command reads whatever the defense."""
    from defenses.config import DEFENSE_SETTINGS, DefenseConfig, unread_setting

    flags = {s.name: s.flag for s in settings if s.owner is DefenseConfig}
    name = values.get("name") or "none"
    bad = unread_setting(name, [k for k in flags if values.get(k) is not None and k not in set(always_read)])
    if bad is not None:
        reads = [flags[k] for k in dict.fromkeys([*DEFENSE_SETTINGS[name], *always_read]) if k in flags]
        raise click.UsageError(
            f"{flags[bad]} does not apply to --defense {name}"
            + (f", which takes {', '.join(reads)}" if reads else ", which takes no settings")
        )


def _parsed(s: Setting) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    """A callback turning the option's text into the setting's value (``Setting.from_text``)."""

    def callback(ctx: click.Context, param: click.Parameter, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return s.from_text(text)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None

    return callback


def _names(s: Setting) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[str, ...] | None]:
    """A callback joining a repeatable, comma-separable option of names, checked against the choices."""

    def callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...] | None:
        names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
        for n in names:
            if s.choices and n not in s.choices:
                raise click.BadParameter(f"unknown {s.flag[2:]} {n!r}; valid choices: {', '.join(s.choices)}")
        return names or None

    return callback
