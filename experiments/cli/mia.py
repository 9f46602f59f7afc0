"""``fedleak mia``: membership inference, black-box on a trained model or server-side on a
captured federation (``--federated RUN_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from defenses.config import DefenseConfig
from experiments.cli.schema import click_options, refuse_unread_defense_settings
from experiments.cli.state import get_state
from experiments.membership.schema import membership_schema, mia_settings, server_side_schema
from fl.privacy_units import unit_label


@click.command("mia")
@click.option(
    "--federated",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Attack client updates captured in this federation run dir.",
)
@click_options(mia_settings())
@click.option(
    "--client",
    "attacked_clients",
    type=int,
    multiple=True,
    help=server_side_schema().by_name()["clients"].help,
)
@click.option(
    "--lira-variance",
    type=click.Choice(["fixed", "per-example"]),
    default=None,
    help="LiRA's std: fixed, one global std per side (best with few shadows), or per-example (sets fix_variance).  "
    "[default: fixed]",
)
@click.option(
    "--secret-file",
    "--client-secret-file",
    "secret_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="A file holding the data owner's secret (32+ hex digits; a federated target's clients' secret), which "
    "draws the members and the target's batches, dropout masks and DP noise; for an audit that repeats bit for "
    "bit, e.g. OUT/owner/secret of an earlier run (default: a fresh one, kept in OUT/owner/secret).",
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Shadow-model cache (default ~/.cache/fedleak/mia).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/mia"),
    show_default=True,
)
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True)
@click.pass_context
def mia(ctx: click.Context, run_dir: Path | None, **kw: Any) -> None:
    """Membership inference with ROC, AUC, TPR at low FPR, DP bound and empirical epsilon.

    \b
    fedleak mia --dataset cifar10 --model convnet --attack lira --shadows 16 --defense dp-local --target-epsilon 8 --out runs/mia1
    fedleak mia --dataset mnist --model 2nn --clients 4 --rounds 3 --defense dp-local --target-epsilon 8 --out runs/mia2
    fedleak mia --federated runs/fed1 --attack grad-cosine --round 3
    """  # noqa: E501
    state = get_state(ctx)
    values = {s.name: kw.pop(s.name) for s in mia_settings() if s.cli}
    if run_dir is not None:
        _refuse(("split", "one_run_guesses", "secret_file"), {**values, **kw}, "the black-box audit, not to "
                "--federated (a captured run's members are fixed)")  # fmt: skip
        if given := [s.flag for s in membership_schema().settings if s.owner is DefenseConfig and values[s.name]]:
            raise click.UsageError(f"{given[0]} applies to the black-box audit, not to --federated (the captured "
                                   "run's defense is its own)")  # fmt: skip
        server = server_side_schema()
        own = {s.name: values[s.name] for s in server.settings if s.cli}
        cfg = server.build({**own, "clients": kw["attacked_clients"] or None, "seed": state.seed})
        _federated(state, run_dir, cfg, kw)
        return
    refuse_unread_defense_settings(values, membership_schema().settings, always_read=("delta",))  # the empirical ε's
    if values["clients"]:
        _refuse(("epochs",), values, "a central target (leave it out with --clients)")
    else:
        _refuse(("rounds", "local_epochs", "local_steps"), values, "a federated "
                "target (--clients N)")  # fmt: skip
    variance = kw["lira_variance"]
    own = {s.name: values[s.name] for s in membership_schema().settings if s.cli}
    cfg = membership_schema().build(
        {**own, "fix_variance": None if variance is None else variance == "fixed", "seed": state.seed}
    )
    _blackbox(state, cfg, kw)


def _refuse(names: tuple[str, ...], given: dict[str, Any], applies_to: str) -> None:
    """A usage error for the first of ``names`` given on the command line: it applies to ``applies_to`` only."""
    for name in names:
        if given[name] is not None:
            raise click.UsageError(f"--{name.replace('_', '-')} applies to {applies_to}")


def _blackbox(state: Any, cfg: Any, kw: dict[str, Any]) -> None:
    from experiments.membership import run_mia
    from fl.federation.client_side import read_client_secret

    secret = read_client_secret(kw["secret_file"]) if kw["secret_file"] else None
    if cfg.federated:
        from experiments.membership import run_federation_mia
        from fl.federation.engine import quiet_flower

        quiet_flower(verbose=state.verbosity > 0)
        run = run_federation_mia
    else:
        run = run_mia
    res = run(
        cfg, device=state.device, data_root=kw["data_dir"], out_dir=kw["out"],
        progress=state.verbosity >= 0, cache_dir=kw["cache_dir"], secret=secret,
    )  # fmt: skip
    eps = res.epsilon
    head = f"target (final global model of {cfg.clients} clients, {cfg.rounds} rounds)" if cfg.federated else "target"
    click.echo(
        f"{head}: train accuracy {res.train_accuracy:.3f}, test accuracy {res.test_accuracy:.3f}"
        + (
            f", ε {eps:.3g} per {unit_label(res.epsilon_unit or 'record')} (δ={res.delta:g}, {res.accountant})"
            if eps is not None
            else ""
        )
    )
    _report(res.attacks, cfg.fprs, kw["fmt"], kw["out"])
    if res.client_level is not None:
        _client_report(res.client_level, kw["fmt"])
        click.echo(f"server-side scores on the same federation: fedleak mia --federated {res.target_run}")


def _client_report(levels: dict, fmt: str) -> None:
    """Client-level inference: one row per attack (few clients: read the interval, not the point)."""
    from experiments.report.tables import format_table

    rows = []
    for name, m in levels.items():
        ci = f"[{m['auc_ci_low']:.3f}, {m['auc_ci_high']:.3f}]" if "auc_ci_low" in m else "-"
        rows.append([name, f"{m['auc']:.3f}", ci, f"{int(m['n_members'])} / {int(m['n_nonmembers'])}"])
    clients = int(next(iter(levels.values()))["n_members"])
    few = f"; {clients} clients of the run: indicative only" if clients < 10 else ""
    click.echo(f"client level (did this client take part? its records' mean score{few}):")
    click.echo(format_table(["attack", "AUC", "AUC 95% CI", "clients in / out"], rows, fmt))


def _federated(state: Any, run_dir: Path, cfg: Any, kw: dict[str, Any]) -> None:
    from experiments.membership.server_side import run_federated_mia

    res = run_federated_mia(run_dir, cfg, device=state.device, data_root=kw["data_dir"], out_dir=kw["out"])
    click.echo(f"round {res.server_round}, clients {', '.join(map(str, res.clients))}")
    _report(res.attacks, cfg.fprs, kw["fmt"], kw["out"])
    if res.attribution is not None:
        a = res.attribution
        click.echo(f"client attribution (grad-cosine argmax): accuracy {a['accuracy']:.3f} (chance {a['chance']:.3f})")


def _report(attacks: dict[str, dict[str, Any]], fprs: tuple[float, ...], fmt: str, out: Path) -> None:
    """One row per attack: AUC with its interval, TPR at the FPRs, the empirical epsilon."""
    from attacks.membership.metrics import fpr_label
    from experiments.report.tables import ZERO_FP_NOTE, format_table, tpr_label

    labels = [fpr_label(f) for f in fprs]
    n_out = min(m["n_nonmembers"] for m in attacks.values())
    one_run = all("eps_one_run" in m for m in attacks.values())
    header = [
        "attack",
        "AUC",
        "AUC 95% CI",
        *[tpr_label(f, n_out) for f in fprs],
        "bal. acc",
        "ε lower bound per record",
        *(["ε one-run per record"] if one_run else []),
    ]
    rows = []
    for name, m in attacks.items():
        ci = f"[{m['auc_ci_low']:.3f}, {m['auc_ci_high']:.3f}]" if "auc_ci_low" in m else "-"
        rows.append(
            [
                name,
                f"{m['auc']:.3f}",
                ci,
                *[f"{100 * m[k]:.2f}%" for k in labels],
                f"{m['balanced_accuracy']:.3f}",
                f"{m['eps_lower_bound']:.2f}",
                *(
                    [f"{m['eps_one_run']:.2f} ({int(m['one_run_correct'])}/{int(m['one_run_guesses'])})"]
                    if one_run
                    else []
                ),
            ]
        )
        if m.get("bound_violated"):
            click.echo(
                f"WARNING: {name} ROC lies significantly above the DP bound: a bug or an accounting error",
                err=True,
            )
    click.echo(format_table(header, rows, fmt))
    if any("*" in h for h in header):
        click.echo(ZERO_FP_NOTE)
    for name, m in attacks.items():
        if m.get("fitted"):
            fitted = ", ".join(f"{k} = {v:g}" for k, v in m["fitted"].items())
            click.echo(f"{name}: {fitted} (fitted on the shadow models)")
    click.echo(f"results: {out}/metrics.json, {out}/scores.npz, {out}/roc.png")
