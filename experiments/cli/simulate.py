"""``fedleak simulate``: a Flower federation with a defense and a curious server that attacks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from experiments.cli.params import CAPTURE_ATTACKS, key_values, model_option
from experiments.cli.state import get_state

DEFENSE_CHOICES = ("none", "dropout", "dp-local", "dp-central", "ldp", "prune", "quantize", "secagg")


# One entry per DefenseConfig field (except ``name``, which is --defense): the flag is the field name
# with dashes, its value goes to DefenseConfig unchanged, and DefenseConfig validates it. The table
# is spelled out (not read from DefenseConfig) so that `fedleak --help` does not import the defenses
# (Opacus, Flower); tests/federation check it has exactly DefenseConfig's fields and their types.
DEFENSE_OPTIONS: dict[str, tuple[type, str]] = {
    "dropout": (float, "dropout: the model's dropout rate p."),
    "dropout_placement": (str, "dropout: head|all, where models with the option place it."),
    "noise_multiplier": (float, "dp-local/dp-central: noise std / clipping bound."),
    "target_epsilon": (float, "dp-local/dp-central: epsilon budget of the whole run (instead of --noise-multiplier)."),
    "delta": (float, "dp-local/dp-central/ldp: DP delta (default 1e-5)."),
    "max_grad_norm": (float, "dp-local: per-sample clipping bound (default 1.0)."),
    "accountant": (str, "dp-local: Opacus accountant, rdp|prv (default rdp)."),
    "clipping_norm": (float, "dp-central/ldp: clip of each client update (default 1.0)."),
    "clipping": (str, "dp-central: server-fixed|client-fixed|adaptive|client-adaptive."),
    "clipped_count_stddev": (float, "dp-central adaptive: noise std on the clipped count (default clients/20)."),
    "target_quantile": (float, "dp-central adaptive: quantile of the update norms the bound tracks (default 0.5)."),
    "clip_norm_lr": (float, "dp-central adaptive: the bound's geometric learning rate (default 0.2)."),
    "sensitivity": (
        float,
        "ldp: L2 sensitivity the noise is scaled by, >= 2 x clipping norm (default 2 x clipping norm).",
    ),
    "epsilon": (float, "ldp: per-round epsilon of each release (default 1.0)."),
    "prune_ratio": (float, "prune: share of update entries zeroed (default 0.9)."),
    "quantize_bits": (int, "quantize: bits per entry, 1..16 (default 8)."),
    "stochastic_rounding": (bool, "quantize: unbiased stochastic rounding (default) or round to nearest."),
}


def _defense_options(f: Any) -> Any:
    """Add --defense and one option per DEFENSE_OPTIONS entry (unset options keep DefenseConfig's defaults)."""
    opts = [
        click.option("--defense", default="none", show_default=True, help=f"Defense: {', '.join(DEFENSE_CHOICES)}.")
    ]
    for key, (kind, text) in DEFENSE_OPTIONS.items():
        flag = key.replace("_", "-")
        if kind is bool:
            opts.append(click.option(f"--{flag}/--no-{flag}", key, default=None, help=text))
        else:
            opts.append(click.option(f"--{flag}", key, type=kind, default=None, help=text))
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command()
@click.option("--dataset", default="mnist", show_default=True, help="mnist, fmnist, cifar10, cifar100 or sample.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, help="Dataset root (default $FEDLEAK_DATA)."
)
@click.option(
    "--model",
    default="2nn",
    show_default=True,
    help="A model of `fedleak models` (2nn: FedAvg's MNIST MLP, trains in a few rounds; mlp: the DIA paper's).",
)
@model_option
@click.option("--norm", type=click.Choice(["batch", "group", "none"]), default=None, help="Normalisation variant.")
@click.option("--clients", type=int, default=10, show_default=True)
@click.option("--fraction", type=float, default=1.0, show_default=True, help="Share of clients sampled per round.")
@click.option("--rounds", type=int, default=3, show_default=True)
@click.option("--client-examples", type=int, default=0, show_default=True, help="Cap per client (0 = all).")
@click.option("--partition", type=click.Choice(["iid", "dirichlet", "shards"]), default="iid", show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Dirichlet concentration.")
@click.option("--local-epochs", type=int, default=1, show_default=True)
@click.option("--local-steps", type=int, default=0, show_default=True, help="> 0: this many steps instead of epochs.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="0 = full batch.")
@click.option("--lr", type=float, default=0.05, show_default=True)
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--strategy", type=click.Choice(["fedavg", "fedprox"]), default="fedavg", show_default=True)
@click.option("--proximal-mu", type=float, default=0.0, show_default=True, help="FedProx proximal term.")
@_defense_options
@click.option(
    "--attack",
    type=click.Choice(["none", *CAPTURE_ATTACKS]),
    default="none",
    show_default=True,
    help="The curious server's inversion of the attacked clients' updates.",
)
@click.option("--attack-clients", type=int, default=None, help="Clients attacked per round (default 1 with --attack).")
@click.option("--attack-rounds", default=None, help="Comma-separated rounds to attack (default: first and last).")
@click.option("--attack-iters", type=int, default=200, show_default=True)
@click.option(
    "--attack-option",
    "attack_options",
    multiple=True,
    callback=key_values,
    metavar="KEY=VALUE",
    help="Attack setting, e.g. layer_weights=balanced or mask_step_size=0.3 (repeatable; the fields of "
    "the attack's config, see docs/inversion.md).",
)
@click.option("--capture", type=click.Choice(["all", "attacked", "none"]), default="attacked", show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["ray", "inline"]),
    default="ray",
    show_default=True,
    help="ray: Flower's simulation engine; inline: clients run one after another in this process (no Ray).",
)
@click.option("--client-cpus", type=float, default=1.0, show_default=True, help="Ray CPUs per client.")
@click.option("--client-gpus", type=float, default=0.0, show_default=True, help="Ray GPU share per client.")
@click.option("--baseline", is_flag=True, help="Also run --defense none with the same seed and compare.")
@click.option(
    "--client-secret-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A file holding the clients' secret (32+ hex digits), e.g. RUN/clients/client_secret of an earlier run: "
    "with the same --seed and options the run repeats bit for bit. Only the clients see it. Default: a fresh one.",
)
@click.option("--stop-after-round", type=int, default=0, help="Stop after this round as if killed (then --resume).")
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
    from defenses import DefenseConfig
    from experiments.federated import SimulationConfig
    from experiments.federated.compare import compare_table
    from fl.core.runs import atomic_write_text
    from fl.federation.client_side import read_client_secret
    from fl.federation.engine import ray_session
    from fl.federation.settings import TrainSettings

    state = get_state(ctx)
    defense_values = {k: kw[k] for k in DEFENSE_OPTIONS if kw[k] is not None}
    cfg = SimulationConfig(
        dataset=kw["dataset"],
        model=kw["model"],
        model_options=kw["model_options"],
        norm=kw["norm"],
        clients=kw["clients"],
        fraction=kw["fraction"],
        rounds=kw["rounds"],
        client_examples=kw["client_examples"],
        partition=kw["partition"],
        alpha=kw["alpha"],
        strategy=kw["strategy"],
        train=TrainSettings(
            local_epochs=kw["local_epochs"],
            local_steps=kw["local_steps"],
            batch_size=kw["batch_size"],
            lr=kw["lr"],
            optimizer=kw["optimizer"],
            proximal_mu=kw["proximal_mu"] if kw["strategy"] == "fedprox" else 0.0,
        ),
        defense=DefenseConfig.from_dict({"name": kw["defense"], **defense_values}),
        attack=kw["attack"],
        attack_clients=kw["attack_clients"] if kw["attack_clients"] is not None else int(kw["attack"] != "none"),
        attack_rounds=_rounds(kw["attack_rounds"]),
        attack_iters=kw["attack_iters"],
        attack_options=kw["attack_options"],
        capture=kw["capture"],
        engine=kw["engine"],
        client_cpus=kw["client_cpus"],
        client_gpus=kw["client_gpus"],
        data_dir=kw["data_dir"],
        seed=state.seed,
        client_secret=read_client_secret(kw["client_secret_file"]) if kw["client_secret_file"] else None,
        stop_after_round=kw["stop_after_round"],
    )
    from defenses import DEFENSES

    DEFENSES.get(cfg.defense.name)  # an unknown name fails here, before Ray starts
    out = Path(kw["out"])
    if kw["export_partitions"]:
        from experiments.federated.run import export_partitions

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


def _run_one(name: str, cfg: Any, out: Path, state: Any, *, resume: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from experiments.federated import run_federation
    from experiments.federated.epsilon import epsilon_text
    from experiments.federated.run import round_line

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
    eps = f", ε {epsilon_text(result)}" if result["epsilon"] is not None else ""
    click.echo(
        f"{name}: final accuracy {result['final_accuracy']:.4f}, loss {result['final_loss']:.4f}{eps} "
        f"after {result['rounds_done']} rounds in {result['wall_s']:.1f} s -> {out}"
    )
    return result


def _rounds(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of rounds", param_hint="--attack-rounds"
        ) from None
