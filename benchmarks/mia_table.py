"""The membership table of docs/membership.md: undefended vs dropout vs DP-SGD.

Runs ``run_mia`` for each defense setting with one shared pool split and training recipe, and
prints a Markdown table (test accuracy, AUC and TPR at 0.1 % / 1 % FPR for LOSS, LiRA, RMIA).
Every run writes its own folder (config, env, metrics.json, scores.npz, roc.png) under --out.

    .venv/bin/python benchmarks/mia_table.py --out runs/mia_table
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click

from attacks.membership import MIAConfig, run_mia
from experiments.tables import format_table
from fl.device import resolve_device

SETTINGS = {
    "none": {},
    "dropout-0.25": {"defense": "dropout", "dropout": 0.25},
    "dropout-0.5": {"defense": "dropout", "dropout": 0.5},
    "dp-eps1": {"defense": "dp-local", "epsilon": 1.0},
    "dp-eps4": {"defense": "dp-local", "epsilon": 4.0},
    "dp-eps8": {"defense": "dp-local", "epsilon": 8.0},
}
BASE = MIAConfig(
    dataset="cifar10",
    model="mlp",
    norm=None,
    model_options={"hidden": 256, "depth": 2, "bias": True},
    attacks=("loss", "lira", "rmia"),
    shadows=8,
    pool_size=2000,
    population_size=1000,
    epochs=20,
    batch_size=128,
    lr=1e-3,
    optimizer="adam",
)


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/mia_table"),
    show_default=True,
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--only", multiple=True, type=click.Choice(list(SETTINGS)), help="Run only these settings."
)
def main(
    out: Path, data_dir: Path | None, cache_dir: Path | None, device: str, only: tuple[str, ...]
) -> None:
    """Run the defense grid and print the table."""
    dev = resolve_device(device)
    rows = []
    for name, overrides in SETTINGS.items():
        if only and name not in only:
            continue
        cfg = dataclasses.replace(BASE, **overrides)
        t0 = time.perf_counter()
        res = run_mia(
            cfg,
            device=dev,
            data_root=data_dir,
            out_dir=out / name,
            cache_dir=cache_dir or out / "cache",
        )
        secs = time.perf_counter() - t0
        row = [
            name,
            f"{res['test_accuracy']:.3f}",
            "-" if res["epsilon"] is None else f"{res['epsilon']:.2f}",
        ]
        for attack in BASE.attacks:
            m = res["attacks"][attack]
            row += [f"{m['auc']:.3f}", f"{100 * m['tpr@0.1%']:.1f}", f"{100 * m['tpr@1%']:.1f}"]
        rows.append([*row, f"{secs:.0f}"])
        click.echo(
            json.dumps(
                {"setting": name, "seconds": round(secs, 1), "test_accuracy": res["test_accuracy"]}
            ),
            err=True,
        )
    header = ["setting", "test acc", "ε (RDP)"]
    for attack in BASE.attacks:
        header += [f"{attack} AUC", f"{attack} TPR@0.1%", f"{attack} TPR@1%"]
    click.echo(format_table([*header, "seconds"], rows))


if __name__ == "__main__":
    main()
