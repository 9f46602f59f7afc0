"""``fedleak demo``: run the ``quick`` scenario and write its report (the README's main command)."""

from __future__ import annotations

from pathlib import Path

import click

from experiments.cli.compare import load, quiet_cells, run_scenario
from experiments.cli.state import get_state
from experiments.grid import RunOptions
from fl.core.errors import FedleakError
from fl.core.runs import atomic_write_text


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Run folder; rerunning resumes and skips finished cells.",
)
@click.option("--scenario", default="quick", show_default=True, help="Shipped scenario name or .toml path.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Cells run at once.")
@click.pass_context
def demo(ctx: click.Context, out: Path, scenario: str, jobs: int) -> None:
    """Dropout vs the Dropout Inversion Attack (alone and in a Flower federation), and DP vs membership inference,
    in about two minutes on a CPU."""
    from experiments.report import html_report, open_run, text_report, write_figures

    state = get_state(ctx)
    spec = load(scenario)
    quiet_cells(state.verbosity)
    options = RunOptions(jobs=jobs, device=str(state.device), progress=state.verbosity >= 0)
    summary = run_scenario(spec, out, options, seed=state.seed)
    view = open_run(out)
    write_figures(view)
    markdown = text_report(view, "md")
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", html_report(view))
    click.echo(markdown)
    click.echo(
        f"{summary.total} cells ({summary.skipped} reused, {summary.done} run, {summary.failed} failed)"
        f" in {summary.wall_s:.0f} s"
    )
    click.echo(f"report: {out / 'report.html'}  (tables: {out / 'report.md'}, figures: {out / 'plots'})")
    if summary.failed:
        raise FedleakError(f"{summary.failed} cell(s) failed; rerun `fedleak demo --out {out}` to retry them")
