"""``fedleak models``: the model zoo with parameter counts and options."""

from __future__ import annotations

import click

from experiments.report.tables import format_table

SHAPES = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


@click.command("models")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True)
def models(fmt: str) -> None:
    """List the registered models with parameter counts and their options."""
    from fl.models import MODELS, build_model, count_parameters, dropout_sites, model_options

    rows = []
    for name in MODELS.names():
        counts = {}
        for key, (shape, classes) in SHAPES.items():
            net = build_model(name, in_shape=shape, num_classes=classes, dropout=0.5)
            counts[key] = count_parameters(net)
            sites = sum(1 for _ in dropout_sites(net))
        opts = ", ".join(f"{k}={v}" for k, v in model_options(name).items())
        rows.append([name, f"{counts['mnist']:,}", f"{counts['cifar10']:,}", str(sites), opts])
    click.echo(format_table(["model", "params (1x28x28)", "params (3x32x32)", "dropout sites", "options"], rows, fmt))
