"""Shadow (reference) models for LiRA and RMIA, trained fast and cached.

Each candidate record is IN for a random half of the models (the balanced assignment of
Carlini et al., S&P 2022), so every record has IN and OUT models. Models are trained all at
once with ``torch.func.stack_module_state`` + ``vmap`` where that pays (CUDA, REFERENCE.md: about
14x on an H100; MLPs on the CPU) and one after another otherwise (convolutions on the CPU:
REFERENCE.md measures vmap 2x *slower* on 2 cores), and always under DP-SGD and BatchNorm. Trained weights are cached under a hash of the resolved configuration and
the data (safetensors), one file per model, so a repeated or interrupted audit reuses them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attacks.membership.training import DPConfig, TrainConfig, make_optimizer, train_model
from fl.errors import ConfigError
from fl.runs import atomic_write_json, load_tensors, save_tensors, to_jsonable
from fl.seed import derive_seed

VECTORIZE = ("auto", "vmap", "loop")


def balanced_assignment(num_models: int, num_records: int, *, seed: int) -> np.ndarray:
    """(S, N) bool: record n is IN for a random half of the S models (a fair coin decides the odd one)."""
    if num_models < 1:
        raise ConfigError(f"the number of shadow models must be >= 1, got {num_models}")
    rng = np.random.default_rng(seed)
    ranks = rng.random((num_models, num_records)).argsort(0).argsort(0)
    k = num_models // 2 + (rng.random(num_records) < 0.5) * (num_models % 2)
    return ranks < k


def cache_key(parts: Mapping[str, Any], images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the resolved configuration and the training data (first 16 hex digits)."""
    h = hashlib.sha256(json.dumps(to_jsonable(parts), sort_keys=True).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def choose_path(vectorize: str, model: nn.Module, device: torch.device, dp: DPConfig | None) -> str:
    """``vmap`` or ``loop``. ``auto`` takes vmap on CUDA and, on the CPU, for models without
    convolutions (measured with benchmarks/mia_shadows.py on the 2-core box: MLP 1.4-1.9x faster
    with vmap, small ConvNet 0.8x); DP-SGD and BatchNorm (running statistics) always loop."""
    if vectorize not in VECTORIZE:
        raise ConfigError(
            f"unknown vectorize mode {vectorize!r}; valid choices: {', '.join(VECTORIZE)}"
        )
    stateful = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if dp is not None or stateful:
        if vectorize == "vmap":
            raise ConfigError(
                "vectorize=vmap cannot train DP-SGD or BatchNorm models; use loop or auto"
            )
        return "loop"
    if vectorize == "auto":
        conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        return "vmap" if device.type == "cuda" or not conv else "loop"
    return vectorize


def train_stacked(
    models: list[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    inside: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> None:
    """Train ``models`` (same architecture) at once, model s on ``images[inside[s]]``, in place.

    Every step gives each model its own batch; a model whose half is smaller than the largest
    wraps around its own shuffled records, so all models take the same number of steps.
    """
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state([m.to(device).train() for m in models])
    base = copy.deepcopy(models[0]).to("meta")

    def loss_fn(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    batched = vmap(loss_fn, randomness="different")
    opt = make_optimizer(list(params.values()), cfg)
    x_all, y_all = images.to(device), labels.to(device)
    halves = [torch.nonzero(row).squeeze(1) for row in inside.cpu()]
    steps = math.ceil(max(len(h) for h in halves) / cfg.batch_size)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(
        range(cfg.epochs),
        desc="shadow epochs (vmap)",
        unit="epoch",
        disable=None if progress else True,
    ):
        order = torch.stack(
            [
                h[torch.randperm(len(h), generator=gen)].repeat(
                    math.ceil(steps * cfg.batch_size / len(h))
                )[: steps * cfg.batch_size]
                for h in halves
            ]
        ).to(device)
        for i in range(steps):
            idx = order[:, i * cfg.batch_size : (i + 1) * cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            batched(params, buffers, x_all[idx], y_all[idx]).sum().backward()
            opt.step()
    with torch.no_grad():
        for s, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][s])
            model.eval()


def train_shadows(
    build: Callable[[int], nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_shadows: int,
    train: TrainConfig,
    dp: DPConfig | None,
    seed: int,
    device: torch.device,
    cache_dir: str | Path | None,
    key_parts: Mapping[str, Any],
    vectorize: str = "auto",
    progress: bool = True,
) -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
    """Shadow models and their (S, N) IN assignment over ``images``; ``build(seed)`` makes a fresh model.

    Returns ``(models, inside, info)`` with ``info`` = path taken, cache key, how many were reused.
    """
    inside = balanced_assignment(num_shadows, len(images), seed=derive_seed(seed, "assignment"))
    models = [build(derive_seed(seed, "shadow", s)) for s in range(num_shadows)]
    path = choose_path(vectorize, models[0], device, dp)
    key = cache_key(
        {**key_parts, "train": train, "dp": dp, "num_shadows": num_shadows, "seed": seed},
        images,
        labels,
    )
    folder = Path(cache_dir) / key if cache_dir is not None else None
    cached = [
        folder is not None and (folder / f"shadow_{s}.safetensors").is_file()
        for s in range(num_shadows)
    ]
    for s in (s for s in range(num_shadows) if cached[s]):
        models[s].load_state_dict(load_tensors(folder / f"shadow_{s}.safetensors"))  # type: ignore[operator]
        models[s].to(device).eval()
    todo = [s for s in range(num_shadows) if not cached[s]]
    if folder is not None and todo:
        atomic_write_json(
            folder / "config.json",
            {**key_parts, "train": train, "dp": dp, "num_shadows": num_shadows, "seed": seed},
        )
    mask = torch.from_numpy(inside)
    if todo and path == "vmap":
        train_stacked(
            [models[s] for s in todo],
            images,
            labels,
            mask[todo],
            train,
            seed=derive_seed(seed, "vmap"),
            device=device,
            progress=progress,
        )
        for s in todo:
            _save(folder, s, models[s])
    elif todo:
        for s in tqdm(todo, desc="shadow models", unit="model", disable=None if progress else True):
            train_model(
                models[s],
                images[mask[s]],
                labels[mask[s]],
                train,
                seed=derive_seed(seed, "train", s),
                device=device,
                dp=dp,
            )
            _save(folder, s, models[s])
    info = {"path": path, "cache_key": key, "reused": int(sum(cached)), "trained": len(todo)}
    return models, inside, info


def _save(folder: Path | None, index: int, model: nn.Module) -> None:
    if folder is not None:
        save_tensors(folder / f"shadow_{index}.safetensors", model.state_dict())
