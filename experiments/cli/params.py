"""Click parameter helpers shared by several commands."""

from __future__ import annotations

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
