"""Click parameter helpers shared by several commands."""

from __future__ import annotations

import math
from pathlib import Path

import click

from fl.core.keyvalues import parse_key_values

# The inversions a captured update supports (oracle needs the client's masks). The same list as
# experiments.federated.config.SERVER_ATTACKS, kept here so the CLI starts without importing Flower.
CAPTURE_ATTACKS = ("dlg", "idlg", "ig", "dia", "analytic")
# What `fedleak attack` runs after the fact: the server's attacks, and the oracle, a bound that
# reads the client's recorded masks and labels from truth/ (`fedleak simulate --record-masks`).
AFTER_THE_FACT = (*CAPTURE_ATTACKS, "oracle")


def key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, object]:
    """Click callback of the repeatable ``KEY=VALUE`` options (see :func:`parse_key_values`)."""
    try:
        return parse_key_values(values)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def model_option(f: click.decorators.FC) -> click.decorators.FC:
    """The repeatable ``--model-option KEY=VALUE`` of every command that builds a model."""
    return click.option(
        "--model-option",
        "model_options",
        multiple=True,
        callback=key_values,
        metavar="KEY=VALUE",
        help="Model option, e.g. bias=true or width=32 (repeatable; see `fedleak models`).",
    )(f)


def lpips_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--lpips-weights`` and ``--lpips-backbone``: LPIPS from local files, for the commands that score
    reconstructions."""
    f = click.option(
        "--lpips-backbone",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="torchvision's AlexNet ImageNet state dict for LPIPS, a local file "
        "(not needed when --lpips-weights holds a whole lpips.LPIPS state dict).",
    )(f)
    return click.option(
        "--lpips-weights",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Also score LPIPS (AlexNet, v0.1): the lpips package's weights/v0.1/alex.pth, a local file.",
    )(f)


class AutoOrUnitFloat(click.ParamType):
    """``auto`` (None) or a number in [0, 1]."""

    name = "auto|[0,1]"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if value is None or value == "auto":
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not 0.0 <= number <= 1.0:
            self.fail(f"{value!r} is neither auto nor a number in [0, 1]", param, ctx)
        return number
