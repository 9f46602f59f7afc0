"""Click options generated from described config fields (:mod:`fl.core.schema`).

Every option defaults to ``None`` (unset: the config's own default applies, and ``--help`` shows
it), so a command knows which settings the user gave. Choices are checked by click; every other
value by the config, in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from experiments.cli.params import key_values
from fl.core.keyvalues import parse_int_list
from fl.core.schema import Setting


def click_option(s: Setting) -> Callable[[Any], Any]:
    """The ``click.option`` of one setting."""
    if s.kind is dict:
        return click.option(s.flag, s.name, multiple=True, callback=key_values, metavar="KEY=VALUE", help=s.help)
    if s.kind is bool:
        shown = s.flag if s.default else f"--no-{s.flag[2:]}"
        return click.option(f"{s.flag}/--no-{s.flag[2:]}", s.name, default=None, help=f"{s.help}  [default: {shown}]")
    shown = "" if s.default is None or s.default == () else f"  [default: {s.default}]"
    if s.kind is tuple:
        return click.option(s.flag, s.name, default=None, callback=_int_list, help=s.help + shown)
    kind: Any = click.Choice(s.choices) if s.choices else s.kind
    return click.option(s.flag, s.name, type=kind, default=None, help=s.help + shown)


def click_options(settings: Iterable[Setting]) -> Callable[[Any], Any]:
    """A decorator adding one option per command-line setting, in order."""
    options = [click_option(s) for s in settings if s.cli]

    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _int_list(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return parse_int_list(text)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
