"""Shadow (reference) models for LiRA and RMIA, trained as the target is and cached.

Each candidate record is IN for a random half of the models (the balanced assignment of
Carlini et al., S&P 2022), so every record has IN and OUT models. Every shadow follows the
target's recipe (:func:`train_model`): its own half, reshuffled each epoch, ``ceil(n/batch)``
steps. Models are trained all at once with ``torch.func.stack_module_state`` + ``vmap`` where
that pays (CUDA; MLPs on the CPU) and one after another otherwise (convolutions on the CPU),
and always one after another under DP-SGD and BatchNorm; benchmarks/mia_shadows.py times both
paths. Trained weights are cached (safetensors, one file per model) with their IN/OUT
assignment, under a hash of the resolved configuration, the data, the path and the training
code, so a repeated or interrupted audit reuses them and a change in any of these retrains.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from attacks.membership.stacked_optim import StackedOptimizer
from attacks.membership.training import ModelTraining, seeded_global_rng, train_model
from fl.core.errors import ConfigError
from fl.core.runs import atomic_write_json, load_tensors, save_tensors, to_jsonable
from fl.seed import derive_seed, private_generator

if TYPE_CHECKING:
    from defenses.config import DefenseConfig

VECTORIZE = ("auto", "vmap", "loop")


def balanced_assignment(num_models: int, num_records: int, *, seed: int) -> np.ndarray:
    """(S, N) bool: record n is IN for a random half of the S models (a fair coin decides the odd one)."""
    if num_models < 1:
        raise ConfigError(f"the number of shadow models must be >= 1, got {num_models}")
    rng = np.random.default_rng(seed)
    ranks = rng.random((num_models, num_records)).argsort(0).argsort(0)
    k = num_models // 2 + (rng.random(num_records) < 0.5) * (num_models % 2)
    return ranks < k


def paired_assignment(num_models: int, num_records: int, *, seed: int) -> np.ndarray:
    """(S, N) bool in complementary pairs: model 2k takes a random half of the records, model 2k+1
    the other half (an odd last model a random half of its own), so every model trains on N/2
    records, as a target of N/2 members does, and every record is IN for half the pairs.

    A federated shadow needs its size fixed: its clients' data sizes set their local steps and
    their DP-SGD noise, which must match the target's clients'.
    """
    if num_models < 1:
        raise ConfigError(f"the number of shadow models must be >= 1, got {num_models}")
    rng = np.random.default_rng(seed)
    inside = np.zeros((num_models, num_records), dtype=bool)
    for s in range(0, num_models, 2):
        half = rng.permutation(num_records)[: num_records // 2]
        inside[s, half] = True
        if s + 1 < num_models:
            inside[s + 1] = ~inside[s]
    return inside


def cache_key(parts: Mapping[str, Any], images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the resolved configuration and the training data (first 16 hex digits)."""
    h = hashlib.sha256(json.dumps(to_jsonable(parts), sort_keys=True).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def choose_path(vectorize: str, model: nn.Module, device: torch.device, dp: DefenseConfig | None) -> str:
    """``vmap`` or ``loop``. ``auto`` takes vmap on CUDA and, on the CPU, for models without
    convolutions (the rule rests on benchmarks/mia_shadows.py; figures in docs/results.md); DP-SGD and
    BatchNorm (running statistics) always loop."""
    if vectorize not in VECTORIZE:
        raise ConfigError(f"unknown vectorize mode {vectorize!r}; valid choices: {', '.join(VECTORIZE)}")
    stateful = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if dp is not None or stateful:
        if vectorize == "vmap":
            raise ConfigError("vectorize=vmap cannot train DP-SGD or BatchNorm models; use loop or auto")
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
    cfg: ModelTraining,
    *,
    seeds: list[int],
    device: torch.device,
    progress: bool = True,
) -> None:
    """Train ``models`` (same architecture) at once, model s on ``images[inside[s]]``, in place.

    Each model follows :func:`train_model`'s recipe with ``seed=seeds[s]``: the same shuffle of
    its own half every epoch, ``ceil(n_s / batch_size)`` steps with a smaller last batch, and an
    optimizer that skips it once its epoch is done. Without dropout the models equal the loop's
    to float tolerance; dropout masks are drawn for all models at once (``randomness=
    "different"``), so with dropout the two paths give different models of the same distribution.
    """
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state([m.to(device).train() for m in models])
    base = copy.deepcopy(models[0]).to("meta")

    def loss_fn(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(functional_call(base, (p, b), (x,)), y, reduction="none")
        return (ce * w).sum() / w.sum().clamp_min(1)  # the mean over the real examples

    batched = vmap(loss_fn, randomness="different")
    opt = StackedOptimizer(list(params.values()), cfg)
    x_all, y_all = images.to(device), labels.to(device)
    halves = [torch.nonzero(row).squeeze(1) for row in inside.cpu()]
    steps = torch.tensor([math.ceil(len(h) / cfg.batch_size) for h in halves])
    width = int(steps.max()) * cfg.batch_size
    gens = [private_generator(s, "shuffle") for s in seeds]  # as train_model shuffles
    with seeded_global_rng(seeds[0], device):  # dropout masks
        for _ in tqdm(
            range(cfg.epochs),
            desc="shadow epochs (vmap)",
            unit="epoch",
            disable=None if progress else True,
        ):
            order = torch.zeros(len(models), width, dtype=torch.long)
            weight = torch.zeros(len(models), width)
            for s, (h, gen) in enumerate(zip(halves, gens, strict=True)):
                order[s, : len(h)] = h[torch.randperm(len(h), generator=gen)]
                weight[s, : len(h)] = 1.0
            order, weight = order.to(device), weight.to(device)
            for i in range(int(steps.max())):
                cols = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
                idx = order[:, cols]
                opt.zero_grad()
                batched(params, buffers, x_all[idx], y_all[idx], weight[:, cols]).sum().backward()
                opt.step(steps > i)
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
    train: ModelTraining,
    dp: DefenseConfig | None,
    seed: int,
    device: torch.device,
    cache_dir: str | Path | None,
    key_parts: Mapping[str, Any],
    vectorize: str = "auto",
    progress: bool = True,
) -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
    """Shadow models and their (S, N) IN assignment over ``images``; ``build(seed)`` makes a fresh model.

    The cache folder holds the assignment the models were trained on (read back, not recomputed)
    and is keyed by the configuration, the data, the training path and the training code.
    Returns ``(models, inside, info)`` with ``info`` = path that trained the models, cache key,
    how many were reused.
    """
    models = [build(derive_seed(seed, "shadow", s)) for s in range(num_shadows)]
    path = choose_path(vectorize, models[0], device, dp)
    parts = {
        **key_parts, "train": train, "dp": dp, "num_shadows": num_shadows, "seed": seed,
        "path": path, "code": code_salt(models[0]),
    }  # fmt: skip
    key = cache_key(parts, images, labels)
    folder = Path(cache_dir) / key if cache_dir is not None else None
    inside = stored_assignment(folder, num_shadows, len(images), seed=derive_seed(seed, "assignment"))
    cached = [folder is not None and (folder / f"shadow_{s}.safetensors").is_file() for s in range(num_shadows)]
    for s in (s for s in range(num_shadows) if cached[s]):
        models[s].load_state_dict(load_tensors(folder / f"shadow_{s}.safetensors"))  # type: ignore[operator]
        models[s].to(device).eval()
    todo = [s for s in range(num_shadows) if not cached[s]]
    if folder is not None and todo:
        atomic_write_json(folder / "config.json", parts)
    mask = torch.from_numpy(inside)
    seeds = [derive_seed(seed, "train", s) for s in range(num_shadows)]
    if todo and path == "vmap":
        train_stacked(
            [models[s] for s in todo],
            images,
            labels,
            mask[todo],
            train,
            seeds=[seeds[s] for s in todo],
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
                seed=seeds[s],
                device=device,
                dp=dp,
            )
            _save(folder, s, models[s])
    info = {"path": path, "cache_key": key, "reused": int(sum(cached)), "trained": len(todo)}
    return models, inside, info


def code_salt(model: nn.Module) -> str:
    """Hash of the code that trains and builds ``model``: the training modules (DP-SGD's in
    ``defenses`` too), every module of the model zoo (the builders: an MLP is a torch ``Sequential``
    whose layers a builder chose), the source file of every class in the model, the seeding code,
    and torch's and Opacus' versions. A change in any of them misses the cache instead of reusing
    models trained by other code."""
    import fl.models
    import fl.seed
    from attacks.membership import stacked_optim, training
    from defenses import accounting, dp_local

    modules = (training, stacked_optim, dp_local, accounting, fl.seed, sys.modules[__name__])
    files = {Path(inspect.getfile(m)) for m in modules}
    files |= set(Path(inspect.getfile(fl.models)).parent.glob("*.py"))
    files |= {
        Path(inspect.getfile(type(m)))
        for m in model.modules()
        if type(m).__module__.split(".")[0] in ("fl", "attacks", "defenses")
    }
    import opacus  # DP-SGD targets and shadows

    h = hashlib.sha256(f"torch {torch.__version__} opacus {opacus.__version__}".encode())
    for file in sorted(files):
        h.update(file.name.encode() + file.read_bytes())
    return h.hexdigest()[:12]


def stored_assignment(
    folder: Path | None,
    num_models: int,
    num_records: int,
    *,
    seed: int,
    draw: Callable[..., np.ndarray] = balanced_assignment,
) -> np.ndarray:
    """The stored IN/OUT assignment of ``folder``, or a new one by ``draw`` (stored there before any training)."""
    file = folder / "assignment.safetensors" if folder is not None else None
    if file is not None and file.is_file():
        stored = load_tensors(file)["inside"].numpy().astype(bool)
        if stored.shape == (num_models, num_records):
            return stored
    inside = draw(num_models, num_records, seed=seed)
    if file is not None:
        for stale in folder.glob("shadow_*.safetensors"):  # type: ignore[union-attr]
            stale.unlink()  # trained on an assignment that is gone
        save_tensors(file, {"inside": torch.from_numpy(inside.astype(np.uint8))})
    return inside


def _save(folder: Path | None, index: int, model: nn.Module) -> None:
    if folder is not None:
        save_tensors(folder / f"shadow_{index}.safetensors", model.state_dict())
