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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attacks.inversion import metrics
from attacks.inversion.base import (
    ATTACKS,
    InversionResult,
    config_default,
    config_fields,
    invert_many,
)
from attacks.inversion.lpips import LPIPS, check_lpips_paths, load_lpips
from attacks.inversion.matching import check_layer_weights
from attacks.inversion.observation import Observation, observe_client
from attacks.inversion.optim import (
    check_given_sites,
    check_lr_decay_at,
    check_mask_init,
    check_mask_penalty,
    check_recipe,
)
from attacks.inversion.plots import save_grid
from attacks.inversion.readout import check_readable
from fl.core.errors import ConfigError
from fl.core.runs import atomic_write_json, init_run_dir, load_tensors, read_json, save_tensors
from fl.seed import derive_seed, make_generator

log = logging.getLogger("fedleak.invert")


MODEL_TV_WEIGHT = {"vit": 1e-5}
"""TV weights that replace the attacks' defaults on some architectures: IG's 1e-4 over-smooths the
ViT (8 CIFAR-10 images, 1000 iterations: IG at p = 0 23.46 dB with 1e-4, 31.59 dB with 1e-5)."""


@dataclass(frozen=True)
class InversionConfig:
    """One inversion experiment (shared by the CLI, scenario files and tests)."""

    dataset: str = "cifar10"  # dataset name (fl.data)
    split: str = "test"  # which split the victims' images come from
    model: str = "mlp"  # model name (fl.models)
    model_options: dict[str, Any] = field(default_factory=dict)  # the model's own options
    dropout: float = 0.25  # dropout rate of every dropout layer
    attacks: tuple[str, ...] = ("ig", "dia", "oracle")  # attacks compared side by side
    indices: tuple[int, ...] = tuple(range(8))  # victim images (dataset indices)
    batch_size: int = 1  # images per client update (consecutive indices form one client)
    local_steps: int = 1  # client SGD steps; > 1 sends a weight delta instead of a gradient
    lr: float = 0.1  # client learning rate
    known_labels: bool = False  # hand the attacker the true labels instead of recovering them
    iters: int = 400  # attack iterations
    restarts: int = 1  # attack restarts (IG family)
    tv_weight: float | None = None  # total-variation weight (None: MODEL_TV_WEIGHT[model], else each attack's default)
    mask_reg: float | None = None  # DIA mask regulariser (None: DIA's default)
    mask_step_size: float | None = None  # DIA Adam learning rate of the masks (None: DIA's default)
    mask_init: str | None = None  # DIA's mask start: bernoulli or mean (None: DIA's default, bernoulli)
    lr_decay_at: tuple[float, ...] | None = (
        None  # recipe ig: fractions of iters where attack lrs drop 10x (None: IG's 3/8, 5/8, 7/8)
    )
    recipe: str | None = (
        None  # the attacks' loop: ig (Geiping et al.) or dia (Scheliga et al.);
        # None: each attack's own (ig, oracle: ig; dia: dia)
    )
    mask_penalty: str | None = (
        None  # DIA mask regulariser on |drop rate - p| (abs) or its square; None: DIA's default, abs
    )
    layer_weights: str | None = None  # cosine layer weights of ig/dia/oracle: equal or balanced (None: equal)
    given_sites: str | None = None  # regex: dropout sites whose true masks DIA is handed (None: none)
    mask_readout: bool = False  # DIA reads the masks a one-example update reveals (batch 1, one step)
    seed: int = 0  # model weights, client RNGs and attack initialisations
    lpips_weights: str | None = None  # LPIPS linear heads (lpips' weights/v0.1/alex.pth); None: no LPIPS
    lpips_backbone: str | None = None  # torchvision AlexNet state dict (None: taken from lpips_weights)

    def __post_init__(self) -> None:
        if self.iters <= 0:
            raise ConfigError(f"iters must be > 0, got {self.iters}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.restarts < 1 or self.batch_size < 1 or self.local_steps < 1:
            raise ConfigError(
                f"restarts, batch_size and local_steps must be >= 1, got {self.restarts}, "
                f"{self.batch_size}, {self.local_steps}"
            )
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.mask_step_size is not None and self.mask_step_size <= 0:
            raise ConfigError(f"mask_step_size must be > 0, got {self.mask_step_size}")
        if self.lr_decay_at is not None:
            check_lr_decay_at(tuple(self.lr_decay_at))
        if self.mask_init is not None:
            check_mask_init(self.mask_init)
        if self.recipe is not None:
            check_recipe(self.recipe)
        if self.mask_penalty is not None:
            check_mask_penalty(self.mask_penalty)
        if self.layer_weights is not None:
            check_layer_weights(self.layer_weights)
        if not self.attacks:
            raise ConfigError(f"no attack given; valid choices: {', '.join(ATTACKS.names())}")
        for name in self.attacks:
            ATTACKS.get(name)
        if not self.indices or len(self.indices) % self.batch_size:
            raise ConfigError(f"{len(self.indices)} indices do not split into clients of batch_size {self.batch_size}")
        if min(self.indices) < 0:
            raise ConfigError(f"indices must be >= 0, got {min(self.indices)}")
        check_lpips_paths(self.lpips_weights, self.lpips_backbone)
        for name, flag, used in (
            ("given_sites", "--given-sites", self.given_sites is not None),
            ("mask_readout", "--mask-readout", self.mask_readout),
        ):
            if used and "dia" not in self.attacks:
                raise ConfigError(f"{name} ({flag}) applies to attack 'dia' only; attacks: {', '.join(self.attacks)}")
        weighted = [a for a in ATTACKS.names() if "layer_weights" in config_fields(a)]
        if self.layer_weights is not None and not set(weighted) & set(self.attacks):
            raise ConfigError(
                f"layer_weights (--layer-weights) applies to attacks {', '.join(weighted)}; "
                f"attacks: {', '.join(self.attacks)}"
            )
        check_given_sites(self.given_sites)
        if self.mask_readout:
            check_readable(self.update_kind, self.batch_size, self.local_steps)
        if self.dropout == 0.0 and {"dia", "oracle"} & set(self.attacks):
            raise ConfigError("attacks 'dia' and 'oracle' need a model with dropout > 0; use 'ig' for dropout 0")
        if self.lr_decay_at is not None:
            plateau = [a for a in self.attacks if self.recipe_of(a) == "dia"]
            if plateau:
                raise ConfigError(
                    f"lr_decay_at (--lr-decay-at) sets recipe ig's schedule, but {', '.join(plateau)} "
                    "run(s) the DIA authors' recipe (a plateau schedule); add --recipe ig or drop it"
                )

    @property
    def update_kind(self) -> str:
        """What each client sends: its gradient after one local step, else its weight delta."""
        return "gradient" if self.local_steps == 1 else "delta"

    def label(self, attack: str) -> str:
        """How tables and grids name ``attack``: a DIA handed some true masks says which, and a
        cosine attack with balanced layer weights says so."""
        parts = []
        if attack == "dia":
            parts += (["readout"] if self.mask_readout else []) + (
                [f"given {self.given_sites}"] if self.given_sites else []
            )
            if self.mask_penalty == "square":
                parts.append("squared penalty")
        if self.layer_weights == "balanced" and "layer_weights" in config_fields(attack):
            parts.append("balanced")
        default = config_default(attack, "recipe")
        if default is not None and self.recipe is not None and self.recipe != default:
            parts.append(f"{self.recipe} recipe")
        return f"{attack} ({'; '.join(parts)})" if parts else attack

    def recipe_of(self, attack: str) -> str | None:
        """The loop recipe ``attack`` runs in this run (None for attacks without one)."""
        default = config_default(attack, "recipe")
        return None if default is None else self.recipe or default

    def attack_overrides(self, attack: str) -> dict[str, Any]:
        """The settings this run imposes on ``attack`` (only those its config has)."""
        wanted = {
            "iters": self.iters,
            "restarts": self.restarts,
            "seed": self.seed,
            "tv_weight": self.tv_weight if self.tv_weight is not None else MODEL_TV_WEIGHT.get(self.model),
            "mask_reg": self.mask_reg,
            "mask_step_size": self.mask_step_size,
            "mask_init": self.mask_init,
            "lr_decay_at": None if self.lr_decay_at is None else tuple(self.lr_decay_at),
            "layer_weights": self.layer_weights,
            "given_sites": self.given_sites,
            "mask_readout": self.mask_readout,
            "recipe": self.recipe,
            "mask_penalty": self.mask_penalty,
        }
        names = config_fields(attack)
        return {k: v for k, v in wanted.items() if k in names and v is not None}


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
    result: list[InversionResult],
    truth: torch.Tensor,
    true_labels: torch.Tensor,
    batch: int,
    *,
    lpips: LPIPS | None = None,
) -> dict[str, Any]:
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
    extra = {"lpips_mean": sum(per["lpips"]) / len(per["lpips"])} if lpips is not None else {}
    return {
        "psnr_mean": float(psnr_t.mean()),
        "psnr_std": float(psnr_t.std()) if len(finite) > 1 else 0.0,
        "ssim_mean": sum(per["ssim"]) / len(per["ssim"]),
        "mse_mean": sum(per["mse"]) / len(per["mse"]),
        **extra,
        "label_acc": sum(label_acc) / len(label_acc),
        "label_source": result[0].label_source,
        "grad_loss_mean": sum(r.grad_loss for r in result) / len(result),
        "iters": result[0].iters,
        "per_image": per,
    }


def run_inversion(
    cfg: InversionConfig,
    *,
    device: torch.device | str = "cpu",
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run every attack of ``cfg``; returns ``{attack: summary}`` and writes ``metrics.json``
    and ``grid.png`` (plus per-attack checkpoints) into ``out_dir`` when given."""
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
    summaries: dict[str, dict[str, Any]] = {}
    recons: dict[str, torch.Tensor] = {}
    for name in cfg.attacks:
        ckpt = out / "attacks" / f"{name}.safetensors" if out is not None else None
        if resume and ckpt is not None and ckpt.exists():
            summaries[name] = read_json(ckpt.with_suffix(".json"))
            recons[name] = load_tensors(ckpt)["inputs"]
            log.info("%s: resumed from %s", name, ckpt)
            continue
        start = time.perf_counter()
        config = ATTACKS.get(name).Config(**cfg.attack_overrides(name))
        result = invert_many(observations, name, config=config, device=device, progress=progress)
        summary = summarize(result, truth, true_labels, cfg.batch_size, lpips=scorer)
        summary["time_s"] = time.perf_counter() - start
        summary["trace"] = [r.trace for r in result]
        summary["attack_config"] = asdict(config)  # the settings in force, defaults resolved
        if cfg.label(name) != name:
            summary["label"] = cfg.label(name)
        summaries[name] = summary
        recons[name] = torch.cat([r.inputs for r in result])
        log.info(
            "%s: PSNR %.2f dB, SSIM %.3f, label acc %.2f, %.1f s",
            name,
            summary["psnr_mean"],
            summary["ssim_mean"],
            summary["label_acc"],
            summary["time_s"],
        )
        if ckpt is not None:
            save_tensors(ckpt, {"inputs": recons[name], "labels": torch.cat([r.labels for r in result])})
            atomic_write_json(ckpt.with_suffix(".json"), summary)
    if out is not None:
        atomic_write_json(out / "metrics.json", {"config": asdict(cfg), "device": str(device), "attacks": summaries})
        save_tensors(out / "reconstructions.safetensors", {"truth": truth, **recons})
        ordered = {cfg.label(n): _matched(recons[n], truth, cfg.batch_size) for n in cfg.attacks}
        psnr = {cfg.label(n): summaries[n]["per_image"]["psnr"] for n in cfg.attacks}
        save_grid(out / "grid.png", truth, ordered, psnr)
    return summaries


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
