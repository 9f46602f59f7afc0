"""``fedleak attack RUN_DIR``: invert an update the curious server captured during ``fedleak simulate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from attacks.inversion.base import attack_settings
from experiments.cli.params import AFTER_THE_FACT, key_values, lpips_options
from experiments.cli.schema import click_options
from experiments.cli.state import get_state


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--attack",
    type=click.Choice(AFTER_THE_FACT),
    default="dia",
    show_default=True,
    help="Inversion attack; oracle: not an attack but DIA's bound, given the client's dropout masks and "
    "ordered labels from RUN_DIR/truth (a run with --record-masks).",
)
@click.option("--round", "server_round", type=int, default=None, help="Captured round (default: the first).")
@click.option("--client", default=None, help="Client id, or 'aggregate' under SecAgg+ (default: the first captured).")
@click.option("--iters", type=click.IntRange(min=1), default=400, show_default=True, help="Optimization steps.")
@click.option(
    "--max-images",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="> 0: rebuild at most this many images of a larger update, under the one-gradient approximation "
    "(the update read as one mean gradient at the global weights), scored against the true images they "
    "match best (0: every image, replaying the local steps).",
)
@click_options(s for s in attack_settings() if s.cli)
@click.option(
    "--attack-option",
    "attack_options",
    multiple=True,
    callback=key_values,
    metavar="KEY=VALUE",
    help="Any other attack setting, e.g. bn_prior=0.01 (repeatable; the fields of the attack's config, "
    "as `fedleak simulate --attack-option`; see docs/inversion.md).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Dataset root (default: as recorded).")
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Torch CPU threads for the optimization (0 = torch's default).",
)
@lpips_options
@click.pass_context
def attack(
    ctx: click.Context,
    run_dir: str,
    attack: str,
    server_round: int | None,
    client: str | None,
    iters: int,
    max_images: int,
    attack_options: dict[str, object],
    data_dir: str | None,
    threads: int,
    lpips_weights: Path | None,
    lpips_backbone: Path | None,
    **flags: Any,
) -> None:
    """Reconstruct a client's training images from its captured update; print PSNR/SSIM (LPIPS from local
    weights), save a grid.

    Only RUN_DIR/capture (what the server received) feeds the attack; RUN_DIR/truth is read
    afterwards to score it.
    """
    from attacks.inversion.lpips import check_lpips_paths, load_lpips
    from experiments.federated.attacking import attack_captured, part_attacked, save_outcome_grid
    from experiments.federated.config import check_attack_options, unattackable_training
    from fl.core.errors import ConfigError
    from fl.core.runs import atomic_write_json, environment_record, read_json
    from fl.data import load_dataset
    from fl.federation.capture import AGGREGATE, CaptureStore
    from fl.federation.settings import TrainSettings

    state = get_state(ctx)
    options = {**attack_options, **{name: value for name, value in flags.items() if value is not None}}
    layer_weights = str(options.get("layer_weights", "equal"))
    if options:
        check_attack_options(attack, options)
    check_lpips_paths(lpips_weights, lpips_backbone)
    scorer = load_lpips(lpips_weights, lpips_backbone) if lpips_weights is not None else None
    store = CaptureStore(run_dir)
    rounds = store.rounds()
    if not rounds:
        raise ConfigError(f"{run_dir} captured no rounds (was it run with --capture none?)")
    r = rounds[0] if server_round is None else server_round
    if r not in rounds:
        raise ConfigError(f"--round {r} was not captured; captured rounds: {', '.join(map(str, rounds))}")
    captured = store.clients(r)
    if not captured:
        raise ConfigError(f"round {r} has no captured client update")
    target: int | str = captured[0] if client is None else (AGGREGATE if client == AGGREGATE else _client_id(client))
    if target not in captured:
        raise ConfigError(
            f"--client {client} has no captured update in round {r}; captured: {', '.join(map(str, captured))}"
        )
    if why := unattackable_training(TrainSettings.from_config(store.round_info(r)["config"])):
        raise ConfigError(why)
    config_file = Path(run_dir) / "config.json"
    recorded = read_json(config_file) if config_file.is_file() else {}
    root = data_dir or recorded.get("data_dir")
    train = load_dataset(store.dataset()["dataset"], split=store.dataset()["split"], root=root)
    if part := part_attacked(store.load(r, target), max_images):
        click.echo(f"attacking {part}", err=True)
    [outcome] = attack_captured(
        store,
        [(r, target)],
        attack,
        train.images,
        iters=iters,
        seed=state.seed,
        device=state.device,
        threads=threads,
        options=options or None,
        lpips=scorer,
        train_labels=train.labels,
        progress=state.verbosity >= 0 and sys.stderr.isatty(),
        max_images=max_images,
    )
    name = attack if layer_weights == "equal" else f"{attack}-{layer_weights}"
    stem = Path(run_dir) / "attacks" / f"{name}_round{r:04d}_{target}_cli"
    save_outcome_grid(outcome, stem.with_suffix(".png"))
    lpips = (
        {}
        if outcome.lpips is None
        else {
            "lpips_mean": outcome.lpips,
            "lpips_weights": str(lpips_weights),
            "lpips_backbone": None if lpips_backbone is None else str(lpips_backbone),
        }
    )
    atomic_write_json(
        stem.with_suffix(".json"),
        {
            "round": r,
            "client": target,
            "attack": attack,
            "layer_weights": layer_weights,
            "attack_options": options,
            "iters": iters,
            "threads": threads,
            "max_images": max_images,
            "part": outcome.part,
            "baseline_psnr": outcome.baseline_psnr,
            "scores": outcome.scores,
            "label_acc": outcome.label_acc,
            **lpips,
            "env": environment_record(state.seed, state.device),
        },
    )
    click.echo(
        f"{attack}{'' if layer_weights == 'equal' else f' ({layer_weights})'} on round {r}, client {target}: "
        f"PSNR {outcome.psnr:.2f} dB, SSIM {outcome.ssim:.3f}"
        + ("" if outcome.lpips is None else f", LPIPS {outcome.lpips:.4f}")
        + ("" if outcome.label_acc is None else f", label acc {outcome.label_acc:.2f}")
        + f" over {len(outcome.truth)} image(s) -> {stem.with_suffix('.png')}"
    )
    if attack == "oracle":
        click.echo("oracle: a bound, not an attack - it was given the client's dropout masks and labels from truth/")
    if outcome.baseline_psnr is not None:
        click.echo(
            f"baseline: {len(outcome.truth)} copies of the update's mean image, matched the same way, score PSNR "
            f"{outcome.baseline_psnr:.2f} dB (matching each image to its closest true one flatters any output; "
            "label acc here is the share of the recovered labels found among the update's)"
        )


def _client_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a client id nor 'aggregate'", param_hint="--client") from None
