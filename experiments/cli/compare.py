"""``fedleak compare SCENARIO --out runs/NAME``: run a scenario's grid, resumably."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from experiments.cli.state import get_state
from experiments.grid import CELL_KINDS, RunOptions, RunSummary, expand, load_scenario
from experiments.grid import run_scenario as _run_scenario
from experiments.grid.scenario import Scenario
from experiments.store import ResultStore
from fl.core.errors import FedleakError


def run_scenario(scenario: Scenario, out: Path, options: RunOptions, *, seed: int) -> RunSummary:
    """Run ``scenario`` into ``out`` with the registered cell kinds."""
    return _run_scenario(scenario, out, kinds=CELL_KINDS, options=options, seed=seed)


def quiet_cells(verbosity: int) -> None:
    """In a grid the progress bar and the store report each cell: cells' own INFO logs only with -v."""
    if verbosity <= 0:
        logging.getLogger("fedleak").setLevel(logging.WARNING)


def load(scenario: str) -> Scenario:
    """A shipped scenario or a .toml file, validated against the registered cell kinds."""
    return load_scenario(scenario, kinds=CELL_KINDS.names())


@click.command("compare")
@click.argument("scenario")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder (default: runs/<scenario name>). Rerunning skips the cells already done.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cells run at once (worker processes, torch threads split between them).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine; ray: tasks on an existing Ray cluster (--address).",
)
@click.option("--address", default=None, help="Ray cluster address for --executor ray (e.g. auto).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset folder (default: $FEDLEAK_DATA or the user cache).",
)
@click.option("--list", "list_only", is_flag=True, help="List the cells and their status, run nothing.")
@click.pass_context
def compare(
    ctx: click.Context,
    scenario: str,
    out: Path | None,
    jobs: int,
    executor: str,
    address: str | None,
    data_dir: Path | None,
    list_only: bool,
) -> None:
    """Run the grid of SCENARIO (a shipped name: quick, dia-paper, mia, federated, full; or a .toml path)."""
    state = get_state(ctx)
    spec = load(scenario)
    out = out or Path("runs") / spec.name
    if list_only:
        _list_cells(spec, out)
        return
    quiet_cells(state.verbosity)
    options = RunOptions(
        jobs=jobs,
        executor=executor,
        address=address,
        device=str(state.device),
        data_root=str(data_dir) if data_dir else None,
        progress=state.verbosity >= 0,
    )
    summary = run_scenario(spec, out, options, seed=state.seed)
    click.echo(
        f"{summary.total} cells: {summary.skipped} already done, {summary.done} run now,"
        f" {summary.failed} failed ({summary.wall_s:.0f} s); results in {out}"
    )
    if summary.failed:
        raise FedleakError(
            f"{summary.failed} cell(s) failed (errors in {out}/cells/*/error.txt); rerun the same command to retry them"
        )
    click.echo(f"next: fedleak report {out} --format md   (or --format html)")


def _list_cells(spec: Scenario, out: Path) -> None:
    from experiments.report.tables import format_table

    cells = expand(spec, kinds=CELL_KINDS)
    done: set[str] = set()
    if (out / "results.sqlite").is_file():
        with ResultStore(out) as store:
            done = store.done_keys()
    # the attacks the cell runs (an inversion cell at p = 0 drops DIA), else the block's list
    rows = [
        [
            c.key,
            c.kind,
            c.dataset,
            c.model,
            ",".join(getattr(c.typed, "attacks", c.attacks)),
            c.defense,
            c.setting,
            c.seed,
            "done" if c.key in done else "todo",
        ]
        for c in cells
    ]
    header = ["key", "kind", "dataset", "model", "attacks", "defense", "setting", "seed", "status"]
    click.echo(format_table(header, rows))
