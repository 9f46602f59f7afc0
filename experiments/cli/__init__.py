"""The ``fedleak`` command line.

Commands live in one module each and are imported lazily, so ``fedleak --help`` answers
without importing torch or Flower. User mistakes end in one line and exit status 2;
runtime failures in one line and exit status 1; never a traceback (``-v`` shows it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import click

from experiments.cli.logs import configure_logging
from experiments.cli.state import SEED, CliState
from fl import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {  # name -> (module, attribute, short help for --help)
    "datasets": ("experiments.cli.datasets", "datasets", "Datasets by name and their federated partitions."),
    "models": (
        "experiments.cli.models",
        "models",
        "List the registered models with parameter counts and their options.",
    ),
    "invert": (
        "experiments.cli.invert",
        "invert",
        "Attack clients' updates and score the reconstructions (PSNR, SSIM, label accuracy; LPIPS from local weights).",
    ),
    "simulate": (
        "experiments.cli.simulate",
        "simulate",
        "Run a federation (Flower simulation, Ray) with a curious server recording the updates.",
    ),
    "attack": (
        "experiments.cli.attack",
        "attack",
        "Reconstruct a client's training images from its captured update; print PSNR/SSIM (LPIPS from local weights), "
        "save a grid.",
    ),
    "mia": (
        "experiments.cli.mia",
        "mia",
        "Membership inference with ROC, AUC, TPR at low FPR, DP bound and empirical epsilon.",
    ),
    "compare": (
        "experiments.cli.compare",
        "compare",
        "Run the grid of SCENARIO (a shipped name: quick, dia-paper, mia, federated, full; or a .toml path).",
    ),
    "report": (
        "experiments.cli.report",
        "report",
        "Aggregate RUN_DIR's results over seeds: which defense stops which attack, at what cost.",
    ),
    "demo": (
        "experiments.cli.demo",
        "demo",
        "Dropout vs the Dropout Inversion Attack (alone and in a Flower federation), and DP vs membership inference, "
        "in about two minutes on a CPU.",
    ),
}


class FedleakGroup(click.Group):
    """Lazily imported subcommands, and project exceptions turned into one clear line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (mod, _, _) in COMMANDS.items() if importlib.util.find_spec(mod) is not None]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands from :data:`COMMANDS` without importing them (torch, Opacus, Flower)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context) -> object:
        from fl.core.errors import ConfigError, FedleakError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            if _verbose(ctx):
                raise
            raise click.UsageError(str(exc), ctx=ctx) from None
        except FedleakError as exc:
            if _verbose(ctx):
                raise
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: results written so far are kept; rerun with --resume to continue", err=True)
            sys.exit(130)


def _verbose(ctx: click.Context) -> bool:
    obj = ctx.find_object(CliState)
    return obj is not None and obj.verbosity > 0


@click.group(cls=FedleakGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="fedleak")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where tensors live: auto picks CUDA when available.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for partitions, weights and attacks.")
@click.option(
    "--attack-budget-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Refuse an inversion estimated to run longer [default: 60; inf: no limit].",
)
@click.option(
    "--attack-budget-gib",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Refuse an inversion estimated to need more memory [default: half the machine's; inf: no limit].",
)
@click.option("-v", "--verbose", count=True, help="More logs (-v shows Flower, Ray and Opacus logs and tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors.")
@click.pass_context
def cli(
    ctx: click.Context,
    device: str,
    seed: int,
    attack_budget_minutes: float | None,
    attack_budget_gib: float | None,
    verbose: int,
    quiet: bool,
) -> None:
    """fedleak: what a curious server or an outsider learns from a federated training run,
    and which defense stops it, at what cost in accuracy."""
    verbosity = -1 if quiet else verbose
    configure_logging(verbosity)
    # through the environment, so that Flower's and Ray's processes apply the same budget
    for name, value in (("FEDLEAK_ATTACK_MINUTES", attack_budget_minutes), ("FEDLEAK_ATTACK_GIB", attack_budget_gib)):
        if value is not None:
            os.environ[name] = repr(value)
    ctx.obj = CliState(device_name=device, seed=seed, verbosity=verbosity)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fedleak")
