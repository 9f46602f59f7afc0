"""The membership table of docs/membership.md: undefended vs dropout vs DP-SGD.

Runs ``run_mia`` for each defense setting with one shared pool split and training recipe (one
data owner's secret, by default the public one in docs/tables-client-secret, so the table
reruns exactly: the same members and target training randomness for every setting), and
prints two Markdown tables: test accuracy, AUC and TPR at 0.1 % / 1 % FPR for LOSS, LiRA, RMIA;
then the accountant's epsilon beside the empirical epsilon lower bound, the DP bound check and
LiRA's bootstrap intervals. Every run writes its own folder (config, env, metrics.json,
scores.npz, roc.png) under --out; ``--figure`` overlays one attack's ROC across the settings.

    .venv/bin/python benchmarks/mia_table.py --out runs/mia_table --figure docs/membership-roc.png
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click
import numpy as np

from attacks.membership.metrics import epsilon_lower_bound
from attacks.membership.plots import plot_roc_settings
from defenses import DefenseConfig
from experiments.membership import run_mia
from experiments.membership.config import MIAConfig
from experiments.membership.results import MembershipResult
from experiments.report.tables import ZERO_FP_NOTE, format_table, tpr_label
from fl.device import resolve_device
from fl.federation.client_side import read_client_secret

SETTINGS = {
    "none": DefenseConfig(),
    "dropout-0.25": DefenseConfig(name="dropout", dropout=0.25),
    "dropout-0.5": DefenseConfig(name="dropout", dropout=0.5),
    "dp-eps1": DefenseConfig(name="dp-local", target_epsilon=1.0),
    "dp-eps4": DefenseConfig(name="dp-local", target_epsilon=4.0),
    "dp-eps8": DefenseConfig(name="dp-local", target_epsilon=8.0),
}
ATTACK_NAMES = {"loss": "LOSS", "lira": "LiRA", "rmia": "RMIA"}
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
@click.option("--only", multiple=True, type=click.Choice(list(SETTINGS)), help="Run only these settings.")
@click.option(
    "--figure",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the overlaid ROC of --figure-attack across settings here (PNG).",
)
@click.option("--figure-attack", type=click.Choice(BASE.attacks), default="lira", show_default=True)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path(__file__).parent.parent / "docs" / "tables-client-secret",
    help="The data owner's secret (members, the targets' training randomness).  [default: docs/tables-client-secret]",
)
def main(
    out: Path,
    data_dir: Path | None,
    cache_dir: Path | None,
    device: str,
    only: tuple[str, ...],
    figure: Path | None,
    figure_attack: str,
    secret_file: Path,
) -> None:
    """Run the defense grid and print the tables (and the figure)."""
    dev = resolve_device(device)
    secret = read_client_secret(secret_file)
    rows, audit_rows = [], []
    curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]] = {}
    start = time.perf_counter()
    for name, defense in SETTINGS.items():
        if only and name not in only:
            continue
        cfg = dataclasses.replace(BASE, defense=defense)
        t0 = time.perf_counter()
        res = run_mia(
            cfg,
            device=dev,
            data_root=data_dir,
            out_dir=out / name,
            cache_dir=cache_dir or out / "cache",
            secret=secret,
        )
        secs = time.perf_counter() - t0
        row = [
            name,
            f"{res.test_accuracy:.3f}",
            "-" if res.epsilon is None else f"{res.epsilon:.2f}",
        ]
        for attack in BASE.attacks:
            m = res.attacks[attack]
            row += [f"{m['auc']:.3f}", f"{100 * m['tpr@0.1%']:.1f}", f"{100 * m['tpr@1%']:.1f}"]
        rows.append([*row, f"{secs:.0f}"])
        with np.load(out / name / "scores.npz") as saved:
            curves[name] = (saved[f"score_{figure_attack}"], saved["members"], res.epsilon)
            # the attack too is chosen on one half of the records, the bound computed on the other
            sets = {a: saved[f"score_{a}"] for a in BASE.attacks}
            bound = epsilon_lower_bound(sets, saved["members"], delta=BASE.defense.delta, seed=BASE.seed)
        audit_rows.append(_audit_row(name, res, bound))
        click.echo(
            json.dumps({"setting": name, "seconds": round(secs, 1), "test_accuracy": res.test_accuracy}),
            err=True,
        )
    header = ["setting", "test acc", f"ε per record (RDP, δ={BASE.defense.delta:g})"]
    n_out = res.attacks[BASE.attacks[0]]["n_nonmembers"]  # the same random split for every setting
    for attack in BASE.attacks:
        header += [f"{attack} AUC", f"{attack} {tpr_label(0.001, n_out)}", f"{attack} {tpr_label(0.01, n_out)}"]
    click.echo(format_table([*header, "seconds"], rows))
    if n_out * 0.001 <= 1:
        click.echo(ZERO_FP_NOTE)
    click.echo()
    audit_header = [
        "setting",
        "train acc",
        f"ε per record (RDP, δ={BASE.defense.delta:g})",
        "ε lower bound per record (95 %, held-out half)",
        "points above bound",
        "significant violations",
        "lira AUC 95 % CI",
        "lira TPR@1% 95 % CI",
    ]
    click.echo(format_table(audit_header, audit_rows))
    click.echo(f"\ntotal wall time: {time.perf_counter() - start:.0f} s")
    if figure is not None:
        members = next(iter(curves.values()))[1]
        plot_roc_settings(
            curves,
            figure,
            delta=BASE.defense.delta,
            title=f"{ATTACK_NAMES[figure_attack]} on {BASE.dataset} {BASE.model}: "
            f"{members.sum()} members, {(~members).sum()} non-members",
        )
        click.echo(f"figure: {figure}")


def _audit_row(name: str, res: MembershipResult, bound: tuple[float, str]) -> list[str]:
    """The privacy columns of one setting: the accountant's epsilon beside the empirical lower bound
    of the best attack (``bound``: chosen on one half of the records, bounded on the other), and the
    DP bound check summed over the attacks."""
    attacks = res.attacks
    eps_bound, best = bound
    dp = res.epsilon is not None
    lira = attacks["lira"]
    return [
        name,
        f"{res.train_accuracy:.3f}",
        f"{res.epsilon:.2f}" if dp else "-",
        f"{eps_bound:.2f} ({best})",
        f"{sum(int(m['points_above_bound']) for m in attacks.values())}" if dp else "-",
        f"{sum(int(m['significant_violations']) for m in attacks.values())}" if dp else "-",
        f"{lira['auc_ci_low']:.3f}-{lira['auc_ci_high']:.3f}",
        f"{100 * lira['tpr@1%_ci_low']:.1f}-{100 * lira['tpr@1%_ci_high']:.1f}",
    ]


if __name__ == "__main__":
    main()
