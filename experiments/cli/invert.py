"""``fedleak invert``: reconstruct training images from client updates with gradient inversion."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import click

from experiments.cli.params import lpips_options, model_option
from experiments.cli.state import SEED, get_state
from experiments.report.tables import format_table

_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def parse_indices(text: str) -> tuple[int, ...]:
    """``"0..7"`` (inclusive), ``"3"``, or comma lists of both (``"0..3,10"``)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = _RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"range {part!r} runs backwards")
            out += range(lo, hi + 1)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"{part!r} is not an index or a range like 0..7")
    if len(set(out)) != len(out):
        raise ValueError("indices repeat")
    return tuple(out)


def _indices(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return parse_indices(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (expected e.g. 0..7 or 0,3,5)") from None


def _lr_decay_at(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if value.strip().lower() == "none":
        return ()
    try:
        return tuple(float(v) for v in value.split(","))  # checked by InversionConfig
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma list of fractions like 0.75,0.9 (or 'none')") from None


def _attacks(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from attacks.inversion import ATTACKS

    names = tuple(n.strip() for v in value for n in v.split(",") if n.strip())
    for n in names:
        if n not in ATTACKS:
            raise click.BadParameter(f"unknown attack {n!r}; valid choices: {', '.join(ATTACKS.names())}")
    return names


@click.command("invert")
@click.option(
    "--attack",
    "attacks",
    multiple=True,
    callback=_attacks,
    help="Attack(s): dlg, idlg, ig, dia, oracle, analytic; repeat or comma-separate. "
    "Default: ig,dia,oracle (ig alone at dropout 0).",
)
@click.option("--model", default="mlp", show_default=True, help="Model from `fedleak models`.")
@model_option
@click.option(
    "--dropout",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.25,
    show_default=True,
    help="Dropout rate p of the client's model.",
)
@click.option("--dataset", default="cifar10", show_default=True, help="Dataset from `fedleak datasets`.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option(
    "--index",
    "indices",
    default="0",
    show_default=True,
    callback=_indices,
    help="Victim image indices: 0..7 (inclusive), 3, or 0,4,9.",
)
@click.option("--iters", type=click.IntRange(min=1), default=400, show_default=True, help="Attack iterations.")
@click.option("--known-labels", is_flag=True, help="Give the attacker the true labels (default: it recovers them).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Images per client update (consecutive indices form one client).",
)
@click.option(
    "--local-steps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Client SGD steps; more than one sends a weight delta, inverted by unrolling.",
)
@click.option(
    "--lr", type=click.FloatRange(min=0.0, min_open=True), default=0.1, show_default=True, help="Client learning rate."
)
@click.option("--restarts", type=click.IntRange(min=1), default=1, show_default=True, help="Attack restarts.")
@click.option(
    "--tv-weight",
    type=click.FloatRange(min=0.0),
    default=None,
    help="TV prior weight [1e-5 on the ViT, else the attack's default].",
)
@click.option("--mask-reg", type=click.FloatRange(min=0.0), default=None, help="DIA mask regulariser [1e-4].")
@click.option(
    "--mask-step-size",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="DIA Adam learning rate of the masks [0.1].",
)
@click.option(
    "--mask-init",
    type=click.Choice(["bernoulli", "mean"]),
    default=None,
    help="DIA's mask start: Bernoulli(1-p) draws, as in the paper, or 1-p everywhere [bernoulli].",
)
@click.option(
    "--recipe",
    type=click.Choice(["ig", "dia"]),
    default=None,
    help="The attacks' loop: ig (Inverting Gradients' code: fixed decays, last iterate) or dia (the "
    "DIA authors' code: rates cut on a plateau, best iterate kept) [ig for ig and oracle; dia for dia].",
)
@click.option(
    "--mask-penalty",
    type=click.Choice(["abs", "square"]),
    default=None,
    help="DIA's mask regulariser on |drop rate - p| as the authors' code, or its square [abs].",
)
@click.option(
    "--lr-decay-at",
    callback=_lr_decay_at,
    default=None,
    metavar="FRACTIONS",
    help="Recipe ig: fractions of --iters after which the attack's learning rates drop 10x, e.g. "
    "0.75,0.9; 'none' keeps them constant [0.375,0.625,0.875, Inverting Gradients].",
)
@click.option(
    "--layer-weights",
    type=click.Choice(["equal", "balanced"]),
    default=None,
    help="ig/dia/oracle cosine: all parameters as one vector, as in the papers, or 'balanced': "
    "each parameter tensor counts equally (the ViT's embedding gradients are 0.2 %% of its norm) [equal].",
)
@click.option(
    "--given-sites",
    default=None,
    metavar="REGEX",
    help="dia only: hand it the client's true masks at the dropout sites matching REGEX (e.g. "
    "attn_drop) and learn the rest, to measure which sites hide the data. Like oracle, an analysis.",
)
@click.option(
    "--mask-readout",
    is_flag=True,
    help="dia only: read the masks that a one-example update reveals through its exact zeros (the "
    "ViT's embedding mask, every MLP mask) and learn only the rest. Needs --batch-size 1 and --local-steps 1 "
    "(a one-example gradient).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset root (default: $FEDLEAK_DATA or the user cache).",
)
@lpips_options
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run directory [runs/invert-<time>]."
)
@click.option("--resume", is_flag=True, help="Continue a run in --out, skipping attacks already done.")
@click.option(
    "--device",
    "device_name",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Overrides the global --device.",
)
@click.option("--seed", type=SEED, default=None, help="Overrides the global --seed.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "latex"]), default="md", show_default=True)
def invert(
    attacks: tuple[str, ...],
    model: str,
    model_options: dict[str, object],
    dropout: float,
    dataset: str,
    split: str,
    indices: tuple[int, ...],
    iters: int,
    known_labels: bool,
    batch_size: int,
    local_steps: int,
    lr: float,
    restarts: int,
    tv_weight: float | None,
    mask_reg: float | None,
    mask_step_size: float | None,
    mask_init: str | None,
    recipe: str | None,
    mask_penalty: str | None,
    lr_decay_at: tuple[float, ...] | None,
    layer_weights: str | None,
    given_sites: str | None,
    mask_readout: bool,
    data_dir: Path | None,
    lpips_weights: Path | None,
    lpips_backbone: Path | None,
    out: Path | None,
    resume: bool,
    device_name: str | None,
    seed: int | None,
    fmt: str,
) -> None:
    """Attack clients' updates and score the reconstructions (PSNR, SSIM, label accuracy; LPIPS from local weights).

    Example: fedleak invert --attack ig,dia,oracle --model mlp --dropout 0.25 --index 0..7 --out runs/x
    """
    from experiments.inversion.laboratory import InversionConfig, run_inversion
    from fl.device import resolve_device

    state = get_state()
    device = resolve_device(device_name) if device_name else state.device
    if not attacks:
        attacks = ("ig", "dia", "oracle") if dropout > 0 else ("ig",)
    cfg = InversionConfig(
        dataset=dataset,
        split=split,
        model=model,
        model_options=model_options,
        dropout=dropout,
        attacks=attacks,
        indices=indices,
        batch_size=batch_size,
        local_steps=local_steps,
        lr=lr,
        known_labels=known_labels,
        iters=iters,
        restarts=restarts,
        tv_weight=tv_weight,
        mask_reg=mask_reg,
        mask_step_size=mask_step_size,
        mask_init=mask_init,
        recipe=recipe,
        mask_penalty=mask_penalty,
        lr_decay_at=lr_decay_at,
        layer_weights=layer_weights,
        given_sites=given_sites,
        mask_readout=mask_readout,
        seed=state.seed if seed is None else seed,
        lpips_weights=None if lpips_weights is None else str(lpips_weights),
        lpips_backbone=None if lpips_backbone is None else str(lpips_backbone),
    )
    out = out or Path("runs") / f"invert-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    progress = state.verbosity >= 0 and sys.stderr.isatty()
    summaries = run_inversion(cfg, device=device, data_root=data_dir, out_dir=out, progress=progress, resume=resume)
    lpips = cfg.lpips_weights is not None
    rows = [
        [
            cfg.label(name),
            f"{s['psnr_mean']:.2f} ± {s['psnr_std']:.2f}",
            f"{s['ssim_mean']:.3f}",
            *([f"{s['lpips_mean']:.4f}"] if lpips else []),
            f"{s['label_acc']:.2f} ({s['label_source']})",
            f"{s['time_s']:.1f}",
        ]
        for name, s in summaries.items()
    ]
    header = ["attack", "PSNR dB", "SSIM", *(["LPIPS"] if lpips else []), "label acc", "time s"]
    click.echo(format_table(header, rows, fmt))
    if state.verbosity >= 0:
        click.echo(f"wrote {out / 'metrics.json'} and {out / 'grid.png'}", err=True)
