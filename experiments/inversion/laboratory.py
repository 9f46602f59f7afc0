"""The inversion experiment: dataset images -> honest clients -> curious server -> attacks -> metrics.

Used by ``fedleak invert`` and by the experiment grid. Every ``batch_size`` consecutive
indices form one client's data; each client trains from the same seeded weights with its own
dropout RNG, and all clients (victims) are attacked in one batched optimization per attack.
Results per attack are checkpointed, so ``resume=True`` skips attacks already done. LPIPS is
scored only when ``lpips_weights`` points to local weights (:mod:`attacks.inversion.lpips`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from attacks.inversion import metrics
from attacks.inversion.base import ATTACKS, InversionResult, invert_many
from attacks.inversion.lpips import LPIPS, load_lpips
from attacks.inversion.observation import Observation, observe_client
from attacks.inversion.plots import save_grid
from experiments.inversion.config import InversionConfig
from experiments.inversion.results import AttackSummary, InversionRun
from fl.core.errors import ConfigError
from fl.core.results import from_json
from fl.core.runs import atomic_write_json, init_run_dir, load_tensors, read_json, save_tensors
from fl.seed import derive_seed, make_generator

log = logging.getLogger("fedleak.invert")


def check_indices(cfg: InversionConfig, size: int) -> None:
    """Refuse victim indices past the end of a split of ``size`` images."""
    if max(cfg.indices) >= size:
        raise ConfigError(f"index {max(cfg.indices)} is past the end of {cfg.dataset} {cfg.split} ({size} images)")


def build_observations(
    cfg: InversionConfig, images: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> list[Observation]:
    """One honest client per ``batch_size`` images, all from the same seeded weights."""
    from fl.models import build_model

    torch.manual_seed(derive_seed(cfg.seed, "model"))
    model = build_model(
        cfg.model,
        in_shape=tuple(images.shape[1:]),
        num_classes=num_classes,
        dropout=cfg.dropout,
        **cfg.model_options,
    )
    kind = cfg.update_kind
    out = []
    for k in range(len(cfg.indices) // cfg.batch_size):
        sl = slice(k * cfg.batch_size, (k + 1) * cfg.batch_size)
        out.append(
            observe_client(
                model,
                images[sl],
                labels[sl],
                model_name=cfg.model,
                model_options=cfg.model_options,
                kind=kind,
                lr=cfg.lr,
                local_steps=cfg.local_steps,
                batch_size=cfg.batch_size,
                generator=make_generator(derive_seed(cfg.seed, "client", k)),
                known_labels=cfg.known_labels,
            )
        )
    return out


def summarize(
    attack: str,
    label: str,
    result: list[InversionResult],
    truth: torch.Tensor,
    true_labels: torch.Tensor,
    batch: int,
    *,
    lpips: LPIPS | None = None,
) -> AttackSummary:
    """Per-image and mean metrics of one attack over all victims (matched within each batch)."""
    per: dict[str, list[float]] = {"mse": [], "psnr": [], "ssim": []}
    if lpips is not None:
        per["lpips"] = []
    label_acc = []
    for k, r in enumerate(result):
        sl = slice(k * batch, (k + 1) * batch)
        s = metrics.score(r.inputs, truth[sl], lpips=lpips)
        for key in per:
            per[key] += s[key]
        label_acc.append(metrics.label_accuracy(r.labels, true_labels[sl]))
    finite = [p for p in per["psnr"] if math.isfinite(p)]
    psnr_t = torch.tensor(per["psnr"], dtype=torch.float64)
    return AttackSummary(
        attack=attack,
        label=label,
        psnr_mean=float(psnr_t.mean()),
        psnr_std=float(psnr_t.std()) if len(finite) > 1 else 0.0,
        ssim_mean=sum(per["ssim"]) / len(per["ssim"]),
        mse_mean=sum(per["mse"]) / len(per["mse"]),
        lpips_mean=sum(per["lpips"]) / len(per["lpips"]) if lpips is not None else None,
        label_acc=sum(label_acc) / len(label_acc),
        label_source=result[0].label_source,
        grad_loss_mean=sum(r.grad_loss for r in result) / len(result),
        iters=result[0].iters,
        time_s=0.0,  # the caller's: the attack's wall time, scoring included
        per_image=per,
        trace=[r.trace for r in result],
    )


def run_inversion(
    cfg: InversionConfig,
    *,
    device: torch.device | str = "cpu",
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
) -> InversionRun:
    """Run every attack of ``cfg`` and score it; writes ``metrics.json`` and ``grid.png`` (plus
    per-attack checkpoints) into ``out_dir`` when given."""
    from fl.data import load_dataset

    device = torch.device(device)
    data = load_dataset(cfg.dataset, split=cfg.split, root=data_root)
    check_indices(cfg, len(data.labels))
    scorer = load_lpips(cfg.lpips_weights, cfg.lpips_backbone) if cfg.lpips_weights is not None else None
    idx = torch.tensor(cfg.indices)
    truth, true_labels = data.images[idx], data.labels[idx]
    observations = build_observations(cfg, truth, true_labels, data.num_classes)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _check_resume(out, cfg, resume)
        init_run_dir(out, config=cfg, seed=cfg.seed, device=device)
    summaries: dict[str, AttackSummary] = {}
    recons: dict[str, torch.Tensor] = {}
    for name in cfg.attacks:
        ckpt = out / "attacks" / f"{name}.safetensors" if out is not None else None
        if resume and ckpt is not None and ckpt.exists():
            summaries[name] = from_json(AttackSummary, read_json(ckpt.with_suffix(".json")))
            recons[name] = load_tensors(ckpt)["inputs"]
            log.info("%s: resumed from %s", name, ckpt)
            continue
        start = time.perf_counter()
        config = ATTACKS.get(name).Config(**cfg.attack_overrides(name))
        result = invert_many(observations, name, config=config, device=device, progress=progress)
        summary = replace(
            summarize(name, cfg.label(name), result, truth, true_labels, cfg.batch_size, lpips=scorer),
            time_s=time.perf_counter() - start,  # the attack's wall time, scoring included
            attack_config=asdict(config),
        )
        summaries[name] = summary
        recons[name] = torch.cat([r.inputs for r in result])
        log.info(
            "%s: PSNR %.2f dB, SSIM %.3f, label acc %.2f, %.1f s",
            name,
            summary.psnr_mean,
            summary.ssim_mean,
            summary.label_acc,
            summary.time_s,
        )
        if ckpt is not None:
            save_tensors(ckpt, {"inputs": recons[name], "labels": torch.cat([r.labels for r in result])})
            atomic_write_json(ckpt.with_suffix(".json"), summary.to_json())
    run = InversionRun(summaries)
    if out is not None:
        atomic_write_json(out / "metrics.json", {"config": cfg, "device": str(device), "attacks": run.to_json()})
        save_tensors(out / "reconstructions.safetensors", {"truth": truth, **recons})
        ordered = {cfg.label(n): _matched(recons[n], truth, cfg.batch_size) for n in cfg.attacks}
        psnr = {cfg.label(n): summaries[n].per_image["psnr"] for n in cfg.attacks}
        save_grid(out / "grid.png", truth, ordered, psnr)
    return run


def _matched(x: torch.Tensor, truth: torch.Tensor, batch: int) -> torch.Tensor:
    """Reorder reconstructions within every client batch to sit under their matched truth."""
    parts = [x[k : k + batch][metrics.match(x[k : k + batch], truth[k : k + batch])] for k in range(0, len(x), batch)]
    return torch.cat(parts)


def _check_resume(out: Path, cfg: InversionConfig, resume: bool) -> None:
    """Resume only a run with the same config; never silently overwrite another run's results."""
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        return
    from fl.core.runs import to_jsonable

    same = read_json(cfg_path) == to_jsonable(cfg)
    if resume and not same:
        raise ConfigError(f"{out} holds a run with a different config; choose another --out or drop --resume")
    if not resume and (out / "metrics.json").exists():
        raise ConfigError(f"{out} already holds results; pass --resume to continue it or choose another --out")
