"""Click parameter helpers shared by several commands."""

from __future__ import annotations

import json

import click


def key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` items to a dict; values are read as JSON (numbers, true/false), else kept as text."""
    out: dict[str, object] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. bias=true or width=16)")
        try:
            out[key] = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def model_option(f: click.decorators.FC) -> click.decorators.FC:
    """The repeatable ``--model-option KEY=VALUE`` of every command that builds a model."""
    return click.option(
        "--model-option", "model_options", multiple=True, callback=key_values, metavar="KEY=VALUE",
        help="Model option, e.g. bias=true or width=32 (repeatable; see `fedleak models`).",
    )(f)
