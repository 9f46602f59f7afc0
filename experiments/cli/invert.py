"""``fedleak invert``: reconstruct training images from client updates with gradient inversion."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from experiments.cli.schema import click_options
from experiments.cli.state import SEED, get_state
from experiments.inversion.config import inversion_schema
from experiments.report.tables import format_table


@click.command("invert")
@click_options(inversion_schema().settings)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset root (default: $FEDLEAK_DATA or the user cache).",
)
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
    data_dir: Path | None,
    out: Path | None,
    resume: bool,
    device_name: str | None,
    seed: int | None,
    fmt: str,
    **settings: Any,
) -> None:
    """Attack clients' updates and score the reconstructions (PSNR, SSIM, label accuracy; LPIPS from local weights).

    Example: fedleak invert --attack ig,dia,oracle --model mlp --dropout 0.25 --index 0..7 --out runs/x
    """
    from experiments.inversion.config import inversion_config
    from experiments.inversion.laboratory import run_inversion
    from fl.device import resolve_device

    state = get_state()
    device = resolve_device(device_name) if device_name else state.device
    cfg = inversion_config({**settings, "seed": state.seed if seed is None else seed})
    out = out or Path("runs") / f"invert-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    progress = state.verbosity >= 0 and sys.stderr.isatty()
    run = run_inversion(cfg, device=device, data_root=data_dir, out_dir=out, progress=progress, resume=resume)
    lpips = cfg.lpips_weights is not None
    rows = [
        [
            s.label,
            f"{s.psnr_mean:.2f} ± {s.psnr_std:.2f}",
            f"{s.ssim_mean:.3f}",
            *([f"{s.lpips_mean:.4f}"] if s.lpips_mean is not None else []),
            f"{s.label_acc:.2f} ({s.label_source})",
            f"{s.time_s:.1f}",
        ]
        for s in run.attacks.values()
    ]
    header = ["attack", "PSNR dB", "SSIM", *(["LPIPS"] if lpips else []), "label acc", "time s"]
    click.echo(format_table(header, rows, fmt))
    if state.verbosity >= 0:
        click.echo(f"wrote {out / 'metrics.json'} and {out / 'grid.png'}", err=True)
