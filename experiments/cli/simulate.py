"""``fedleak simulate``: a Flower federation with a defense and a curious server that attacks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from experiments.cli.schema import click_options, refuse_unread_defense_settings
from experiments.cli.state import get_state
from experiments.federated.results import FederationResult
from experiments.federated.schema import federation_settings, simulation_config


@click.command()
@click_options(federation_settings())
@click.option("--baseline", is_flag=True, help="Also run --defense none with the same seed and compare.")
@click.option(
    "--client-secret-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A file holding the clients' secret (32+ hex digits), e.g. RUN/clients/client_secret of an earlier run: "
    "with the same --seed and options the run repeats bit for bit. Only the clients see it. Default: a fresh one.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option(
    "--export-partitions",
    is_flag=True,
    help="Train nothing: write each client's partition to OUT/client_XXXX.npz (a SuperNode's data-file on "
    "Flower's deployment engine) and who holds what to OUT/truth, then exit.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory.")
@click.pass_context
def simulate(ctx: click.Context, **kw: Any) -> None:
    """Run a federation (Flower simulation, Ray) with a curious server recording the updates.

    \b
    Example:
      fedleak simulate --dataset mnist --model mlp --clients 10 --rounds 5 \\
          --defense dp-local --noise-multiplier 1.0 --attack dia --attack-clients 1 --out runs/sim1
    """
    from experiments.federated.compare import compare_table
    from fl.core.runs import atomic_write_text
    from fl.federation.client_side import read_client_secret
    from fl.federation.engine import ray_session

    state = get_state(ctx)
    values = {s.name: kw.pop(s.name) for s in federation_settings() if s.cli}
    refuse_unread_defense_settings(values, federation_settings())
    if values["attack_clients"] is None:
        values["attack_clients"] = int(values["attack"] not in (None, "none"))
    if values["strategy"] != "fedprox":  # the proximal term belongs to FedProx
        values["proximal_mu"] = None
    secret = read_client_secret(kw["client_secret_file"]) if kw["client_secret_file"] else None
    cfg = simulation_config({**values, "seed": state.seed}, client_secret=secret)
    out = Path(kw["out"])
    if kw["export_partitions"]:
        from experiments.federated.federation import export_partitions

        paths = export_partitions(cfg, out)
        click.echo(f"wrote {len(paths)} partition files ({paths[0].name} .. {paths[-1].name}) and truth/ -> {out}")
        return
    runs = {cfg.defense.name: (cfg, out)}
    if kw["baseline"] and cfg.defense.name != "none":
        runs = {"none": (cfg.with_defense("none"), out / "baseline"), **runs}
    results = {}
    with ray_session(verbose=state.verbosity > 0):
        for name, (run_cfg, run_out) in runs.items():
            results[name] = _run_one(name, run_cfg, run_out, state, resume=kw["resume"])
    if len(results) > 1:
        table = compare_table(results)
        atomic_write_text(out / "compare.md", table + "\n")
        click.echo(table)


def _run_one(name: str, cfg: Any, out: Path, state: Any, *, resume: bool) -> FederationResult:
    from tqdm import tqdm

    from experiments.federated import run_federation
    from experiments.federated.federation import round_line

    quiet = state.verbosity < 0
    bar = tqdm(total=cfg.rounds, desc=name, unit="round", disable=quiet or not sys.stderr.isatty(), leave=False)

    def report(record: dict[str, Any]) -> None:
        line = round_line(name, record, cfg.rounds)
        bar.update(1)
        if not quiet:
            tqdm.write(line, file=sys.stderr) if not bar.disable else click.echo(line, err=True)

    try:
        result = run_federation(
            cfg, out_dir=out, device=state.device, progress=report, resume=resume, verbose=state.verbosity > 0
        )
    finally:
        bar.close()
    eps = f", ε {result.epsilon_text()}" if result.epsilon is not None else ""
    click.echo(
        f"{name}: final accuracy {result.final_accuracy:.4f}, loss {result.final_loss:.4f}{eps} "
        f"after {result.rounds_done} rounds in {result.wall_s:.1f} s -> {out}"
    )
    return result
