"""``fedleak mia``: membership inference, black-box on a trained model or server-side on a
captured federation (``--federated RUN_DIR``)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from experiments.cli.params import AutoOrUnitFloat, model_option
from experiments.cli.state import get_state
from fl.privacy_units import unit_label


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


def _fprs(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        fprs = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    bad = [f for f in fprs if not 0.0 < f < 1.0]
    if bad or not fprs:
        raise click.BadParameter(f"FPR {bad[0] if bad else value!r} is outside (0, 1); e.g. 0.001,0.01")
    return fprs


@click.command("mia")
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    help="Attack(s), repeatable or comma-separated (default loss, lira, rmia; with --federated grad-cosine, "
    "grad-diff, grad-norm, fedmia).",
)
@click.option(
    "--federated",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Attack client updates captured in this federation run dir.",
)
@click.option(
    "--round",
    "server_round",
    type=int,
    default=None,
    help="--federated: round to attack (default: the last captured).",
)
@click.option(
    "--client",
    "clients",
    type=int,
    multiple=True,
    help="--federated: client(s) to attack (default: all captured).",
)
@click.option(
    "--candidates",
    type=int,
    default=500,
    show_default=True,
    help="--federated: members (and non-members) per client.",
)
@click.option("--dataset", default="cifar10", show_default=True)
@click.option("--model", default="convnet", show_default=True)
@click.option("--norm", type=click.Choice(["group", "batch", "none"]), default="group", show_default=True)
@model_option
@click.option(
    "--dropout",
    type=float,
    default=0.0,
    show_default=True,
    help="Dropout rate of the model (the dropout defense).",
)
@click.option(
    "--shadows",
    type=int,
    default=8,
    show_default=True,
    help="Shadow/reference models (LiRA, RMIA).",
)
@click.option(
    "--pool-size",
    type=int,
    default=4000,
    show_default=True,
    help="Candidate records, half members.",
)
@click.option(
    "--split",
    type=click.Choice(["balanced", "bernoulli"]),
    default="balanced",
    show_default=True,
    help="Members: exactly half of the pool, or each record by a fair coin (needed by --one-run-guesses).",
)
@click.option(
    "--one-run-guesses",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Steinke et al.'s one-run audit: guess 'in' for the K highest and 'out' for the K lowest scores "
    "of each attack and bound ε from the right guesses (0: off; needs --split bernoulli).",
)
@click.option("--population-size", type=int, default=1000, show_default=True, help="RMIA population records.")
@click.option("--epochs", type=int, default=20, show_default=True, help="A central target's training epochs.")
@click.option(
    "--clients",
    "target_clients",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="0: train the target centrally; N: the target is the final global model of a Flower federation of N "
    "clients sharing the members (FedAvg), and every shadow is the same federation on its own half of the pool.",
)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Federated target: rounds.")
@click.option(
    "--client-secret-file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Federated target: a file holding its clients' secret (32+ hex digits), for a target that repeats "
    "bit for bit (default: a fresh one).",
)
@click.option(
    "--local-epochs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Federated target: local epochs per round.",
)
@click.option(
    "--local-steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Federated target: > 0, this many local steps instead of epochs.",
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option(
    "--momentum",
    type=float,
    default=0.9,
    show_default=True,
    help="SGD momentum (a federated target's clients start each round afresh).",
)
@click.option(
    "--defense",
    type=click.Choice(["none", "dropout", "dp-local", "dp-central"]),
    default="none",
    show_default=True,
    help="dp-local: DP-SGD (one record); dp-central: the server clips and noises client updates (one client; "
    "needs --clients).",
)
@click.option("--epsilon", type=float, default=8.0, show_default=True, help="dp-local/dp-central: target epsilon.")
@click.option("--delta", type=float, default=1e-5, show_default=True)
@click.option(
    "--max-grad-norm",
    type=float,
    default=1.0,
    show_default=True,
    help="dp-local: per-sample clipping bound; dp-central: per-client update clipping bound.",
)
@click.option(
    "--fpr",
    "fprs",
    default="0.001,0.01,0.1",
    show_default=True,
    callback=_fprs,
    help="FPRs for TPR@FPR.",
)
@click.option(
    "--lira-variance",
    type=click.Choice(["fixed", "per-example"]),
    default="fixed",
    show_default=True,
)
@click.option("--rmia-gamma", type=float, default=1.0, show_default=True)
@click.option(
    "--rmia-a",
    type=AutoOrUnitFloat(),
    default="auto",
    show_default=True,
    help="Offline RMIA scaling a in [0, 1]; auto calibrates it on a shadow model.",
)
@click.option(
    "--vectorize",
    type=click.Choice(["auto", "vmap", "loop"]),
    default="auto",
    show_default=True,
    help="Shadow training path.",
)
@click.option("--bootstrap", type=int, default=200, show_default=True, help="Bootstrap replicates for CIs.")
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
def mia(ctx: click.Context, attacks: tuple[str, ...], run_dir: Path | None, **kw: object) -> None:
    """Membership inference with ROC, AUC, TPR at low FPR, DP bound and empirical epsilon.

    \b
    fedleak mia --dataset cifar10 --model convnet --attack lira --shadows 16 --defense dp-local --epsilon 8 --out runs/mia1
    fedleak mia --dataset mnist --model 2nn --clients 4 --rounds 3 --defense dp-local --epsilon 8 --out runs/mia2
    fedleak mia --federated runs/fed1 --attack grad-cosine --round 3
    """  # noqa: E501
    state = get_state(ctx)
    attacks = _split(attacks)
    if run_dir is not None:
        for name in ("split", "one_run_guesses", "client_secret_file"):
            source = ctx.get_parameter_source(name)
            if source is not None and source.name == "COMMANDLINE":
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(
                    f"{flag} applies to the black-box audit, not to --federated (a captured run's members are fixed)"
                )
        _federated(state, run_dir, attacks, kw)
    else:
        central_only = "--epochs" if kw["target_clients"] else None
        fed_only = [
            f for f in ("rounds", "local_epochs", "local_steps", "client_secret_file") if not kw["target_clients"]
        ]
        for name in [central_only.lstrip("-")] if central_only else fed_only:
            source = ctx.get_parameter_source(name)
            if source is not None and source.name == "COMMANDLINE":
                flag = "--" + name.replace("_", "-")
                what = (
                    "a central target (leave it out with --clients)"
                    if central_only
                    else "a federated target (--clients N)"
                )
                raise click.UsageError(f"{flag} applies to {what}")
        _blackbox(state, attacks, kw)


def _blackbox(state, attacks: tuple[str, ...], kw: dict) -> None:
    from attacks.membership import MIAConfig
    from experiments.membership import run_mia

    cfg = MIAConfig(
        dataset=kw["dataset"], model=kw["model"], norm=kw["norm"], model_options=kw["model_options"],
        clients=kw["target_clients"], rounds=kw["rounds"], local_epochs=kw["local_epochs"],
        local_steps=kw["local_steps"],
        dropout=kw["dropout"], **({"attacks": attacks} if attacks else {}), shadows=kw["shadows"],
        pool_size=kw["pool_size"], split=kw["split"], one_run_guesses=kw["one_run_guesses"],
        population_size=kw["population_size"], epochs=None if kw["target_clients"] else kw["epochs"],
        batch_size=kw["batch_size"], lr=kw["lr"], optimizer=kw["optimizer"], momentum=kw["momentum"],
        defense=kw["defense"],
        epsilon=kw["epsilon"], delta=kw["delta"], max_grad_norm=kw["max_grad_norm"], fprs=kw["fprs"],
        fix_variance=kw["lira_variance"] == "fixed", gamma=kw["rmia_gamma"], offline_a=kw["rmia_a"],
        vectorize=kw["vectorize"], bootstrap=kw["bootstrap"], seed=state.seed,
    )  # fmt: skip
    if cfg.federated:
        from experiments.membership import run_federation_mia
        from fl.federation.client_side import read_client_secret
        from fl.federation.engine import quiet_flower

        quiet_flower(verbose=state.verbosity > 0)
        secret = read_client_secret(kw["client_secret_file"]) if kw["client_secret_file"] else None
        run = functools.partial(run_federation_mia, client_secret=secret)
    else:
        run = run_mia
    res = run(
        cfg, device=state.device, data_root=kw["data_dir"], out_dir=kw["out"],
        progress=state.verbosity >= 0, cache_dir=kw["cache_dir"],
    )  # fmt: skip
    eps = res["epsilon"]
    head = f"target (final global model of {cfg.clients} clients, {cfg.rounds} rounds)" if cfg.federated else "target"
    click.echo(
        f"{head}: train accuracy {res['train_accuracy']:.3f}, test accuracy {res['test_accuracy']:.3f}"
        + (f", ε {eps:.3g} per {unit_label(res['epsilon_unit'])} (δ={res['delta']:g})" if eps is not None else "")
    )
    _report(res, cfg.fprs, kw["fmt"], kw["out"])
    if "client_level" in res:
        _client_report(res["client_level"], kw["fmt"])
        click.echo(f"server-side scores on the same federation: fedleak mia --federated {res['target_run']}")


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


def _federated(state, run_dir: Path, attacks: tuple[str, ...], kw: dict) -> None:
    from experiments.membership.server_side import FederatedMIAConfig, run_federated_mia

    cfg = FederatedMIAConfig(
        **({"attacks": attacks} if attacks else {}), server_round=kw["server_round"],
        clients=tuple(kw["clients"]), candidates=kw["candidates"], fprs=kw["fprs"], bootstrap=kw["bootstrap"],
        seed=state.seed,
    )  # fmt: skip
    res = run_federated_mia(run_dir, cfg, device=state.device, data_root=kw["data_dir"], out_dir=kw["out"])
    click.echo(f"round {res['server_round']}, clients {', '.join(map(str, res['clients']))}")
    _report(res, cfg.fprs, kw["fmt"], kw["out"])
    if "attribution" in res:
        a = res["attribution"]
        click.echo(f"client attribution (grad-cosine argmax): accuracy {a['accuracy']:.3f} (chance {a['chance']:.3f})")


def _report(res: dict, fprs: tuple[float, ...], fmt: str, out: Path) -> None:
    from attacks.membership.metrics import fpr_label
    from experiments.report.tables import ZERO_FP_NOTE, format_table, tpr_label

    labels = [fpr_label(f) for f in fprs]
    n_out = min(m["n_nonmembers"] for m in res["attacks"].values())
    one_run = all("eps_one_run" in m for m in res["attacks"].values())
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
    for name, m in res["attacks"].items():
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
    for name, m in res["attacks"].items():
        if m.get("fitted"):
            fitted = ", ".join(f"{k} = {v:g}" for k, v in m["fitted"].items())
            click.echo(f"{name}: {fitted} (fitted on the shadow models)")
    click.echo(f"results: {out}/metrics.json, {out}/scores.npz, {out}/roc.png")
