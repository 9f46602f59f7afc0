"""``run_mia``: one black-box membership audit, end to end.

The protocol reads like the threat model: draw one pool of records and split it at random into
members and non-members; train the target on the members (with the configured defense); train
shadow models on random halves of the pool; query every model on the pool (and on population
records for RMIA); score with each attack; evaluate; write scores, metrics and the ROC figure.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attacks.membership.base import MembershipObservation, build_attack
from attacks.membership.metrics import evaluate
from attacks.membership.one_run import one_run_audit
from attacks.membership.plots import plot_roc
from attacks.membership.shadows import cache_key, code_salt, train_shadows
from attacks.membership.signals import query_logits
from attacks.membership.training import accuracy, train_model
from defenses.accounting import epsilon_from_history
from experiments.membership.config import MIAConfig
from experiments.membership.owner import keep_owner_secret, keyed_digest, owner_rng, owner_secret, owner_seed
from experiments.membership.results import MembershipResult
from fl.core.errors import ConfigError
from fl.core.runs import (
    atomic_write_bytes,
    atomic_write_json,
    init_run_dir,
    load_tensors,
    read_json,
    save_tensors,
)
from fl.seed import derive_seed

log = logging.getLogger("fedleak.mia")
# what seeds the models' initial weights and names their seeds (this module), and how the owner's
# secret becomes the target's seeds (owner.py): a change to either retrains cached models
DRIVER_FILES = (Path(__file__), Path(__file__).with_name("owner.py"))


def default_cache_dir() -> Path:
    """``$FEDLEAK_CACHE/mia`` or ``~/.cache/fedleak/mia`` (created only when something is stored)."""
    root = os.environ.get("FEDLEAK_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedleak"
    return Path(root) / "mia"


@functools.lru_cache(maxsize=2)
def _merged(dataset: str, data_root: str | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Train and test splits of ``dataset`` as one set (cached: parsing CIFAR takes seconds)."""
    from fl.data import load_dataset

    parts = [load_dataset(dataset, split=s, root=data_root) for s in ("train", "test")]
    return (
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        parts[0].num_classes,
    )


def population_needed(cfg: MIAConfig) -> int:
    """Population records the attacks need (RMIA's), 0 when none does."""
    return cfg.population_size if any(build_attack(a).needs_population for a in cfg.attacks) else 0


def check_pool_fits(cfg: MIAConfig, records: int) -> None:
    """Refuse a pool plus population larger than the dataset's ``records`` (train and test merged)."""
    pop_size = population_needed(cfg)
    if cfg.pool_size + pop_size > records:
        raise ConfigError(
            f"pool_size {cfg.pool_size} + population_size {pop_size} exceeds the {records} records of {cfg.dataset}"
        )


def dataset_records(dataset: str, data_root: str | Path | None) -> int:
    """Records of ``dataset``, train and test merged (the set pools are drawn from)."""
    return len(_merged(dataset, None if data_root is None else str(data_root))[1])


def draw_indices(cfg: MIAConfig, records: int, secret: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pool, population, members)``: disjoint random pool and population indices into a set of
    ``records`` records (the public seed's: the attacker knows them), and the member mask over the
    pool (exactly half, or a fair coin each), drawn by the data owner's ``secret``."""
    check_pool_fits(cfg, records)
    pop_size = population_needed(cfg)
    order = np.random.default_rng(derive_seed(cfg.seed, "pool")).permutation(records)
    pool, pop = order[: cfg.pool_size], order[cfg.pool_size : cfg.pool_size + pop_size]
    rng = owner_rng(secret, "members")
    if cfg.split == "bernoulli":  # independent fair coins, as the one-run audit's theorem assumes
        members = rng.random(cfg.pool_size) < 0.5
    else:
        members = np.zeros(cfg.pool_size, dtype=bool)
        members[rng.permutation(cfg.pool_size)[: cfg.pool_size // 2]] = True
    return pool, pop, members


def draw_pool(
    cfg: MIAConfig, data_root: str | Path | None, secret: str
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor, int]:
    """Pool images/labels, the member mask, population images/labels, and the number of classes.

    Train and test splits are merged into one set, so members and non-members come from the same
    source; the pool and the population are disjoint random subsets of it. With
    ``cfg.standardized`` images are standardised per channel with the whole set's mean and std.
    """
    images, labels, num_classes = _merged(cfg.dataset, None if data_root is None else str(data_root))
    if cfg.standardized:
        mean = images.mean(dim=(0, 2, 3), keepdim=True)
        std = images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        images = (images - mean) / std
    pool, pop, members = draw_indices(cfg, len(images), secret)
    return images[pool], labels[pool], members, images[pop], labels[pop], num_classes


def _builder(cfg: MIAConfig, in_shape: tuple[int, int, int], num_classes: int):
    """The target's (and shadows') model: the user's model options, then the defense's overrides
    (the dropout defense's rate and placement), as a federated model is built."""
    from defenses import build_defense
    from fl.models import build_model

    defense = build_defense(cfg.defense)
    overrides = {**cfg.model_options, **defense.model_overrides()}
    dropout = float(overrides.pop("dropout", 0.0))

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model(
            cfg.model, in_shape=in_shape, num_classes=num_classes, dropout=dropout, norm=cfg.norm, **overrides
        )
        defense.check_model(model)  # e.g. the dropout defense on a model without dropout layers
        return model

    return build


def _key_parts(cfg: MIAConfig) -> dict[str, Any]:
    """What determines a trained model, resolved (``norm`` None is the model's default norm), so
    equivalent configurations share cached shadows; ``driver`` hashes :data:`DRIVER_FILES`."""
    from fl.models import model_options

    return {
        "driver": hashlib.sha256(b"".join(p.read_bytes() for p in DRIVER_FILES)).hexdigest()[:12],
        "dataset": cfg.dataset,
        "model": cfg.model,
        "norm": cfg.norm if cfg.norm is not None else model_options(cfg.model).get("norm"),
        "model_options": dict(cfg.model_options),
        "dropout": cfg.dropout,
        **({"placement": cfg.defense.dropout_placement} if cfg.dropout and cfg.defense.dropout_placement else {}),
        "standardize": cfg.standardized,
    }


def train_target(
    cfg: MIAConfig,
    build,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    secret: str,
    device: torch.device,
    cache_dir: Path,
) -> tuple[nn.Module, list[tuple[float, float, int]] | None]:
    """The target model trained on the members (cached like the shadows); returns the model and,
    under DP-SGD, its accountant's record ``[(sigma, sample rate, steps)]``. Its initial weights
    come from the public seed, its batches, dropout masks and DP noise from the owner's ``secret``.
    Its cache folder is named by a keyed hash under the secret: a name hashed from the public
    settings and the members alone would let whoever reads the cache test a guessed member set."""
    model = build(derive_seed(cfg.seed, "target"))
    parts = {
        **_key_parts(cfg),
        "role": "target",
        "train": cfg.train_config,
        "dp": cfg.dp_config,
        "seed": cfg.seed,
        "code": code_salt(model),
    }
    folder = cache_dir / f"target-{keyed_digest(secret, cache_key(parts, images, labels))}"
    if (folder / "target.safetensors").is_file() and "dp_history" in (saved := read_json(folder / "target.json")):
        model.load_state_dict(load_tensors(folder / "target.safetensors"))
        history = saved["dp_history"]
        return model.to(device).eval(), None if history is None else [(s, q, int(t)) for s, q, t in history]
    history = train_model(
        model,
        images,
        labels,
        cfg.train_config,
        seed=owner_seed(secret, "target-train"),
        device=device,
        dp=cfg.dp_config,
    )
    save_tensors(folder / "target.safetensors", model.state_dict())
    atomic_write_json(folder / "target.json", {"dp_history": history, **parts})
    return model, history


def run_mia(
    cfg: MIAConfig,
    *,
    device: torch.device | str,
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    secret: str | None = None,
) -> MembershipResult:
    """Run the audit; returns test/train accuracy, the accountant's epsilon and per-attack metrics.

    ``secret``: the data owner's (:mod:`experiments.membership.owner`; default a fresh one, kept
    in ``out_dir/owner/secret``), which draws the members and the target's training randomness.
    """
    if cfg.federated:
        raise ConfigError(
            "a federated target (clients > 0) is trained by a Flower federation: use "
            "experiments.membership.run_federation_mia (fedleak mia --clients N)"
        )
    device = torch.device(device)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    secret = owner_secret(secret)
    if out_dir is not None:
        init_run_dir(out_dir, config=cfg, seed=cfg.seed, device=device)
        keep_owner_secret(secret, Path(out_dir))
    x, y, members, pop_x, pop_y, num_classes = draw_pool(cfg, data_root, secret)
    build = _builder(cfg, tuple(x.shape[1:]), num_classes)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    target, history = train_target(cfg, build, x[members], y[members], secret=secret, device=device, cache_dir=cache)
    # the accountant's epsilon on the recorded (sigma, q, steps), kept beside it in metrics.json
    dp = cfg.dp_config
    eps = (
        None
        if history is None or dp is None
        else epsilon_from_history(history, delta=dp.delta, accountant=dp.accountant)
    )
    timings["target_s"] = time.perf_counter() - t0
    train_acc = accuracy(target, x[members], y[members], device=device)
    test_acc = accuracy(target, x[~members], y[~members], device=device)
    log.debug(  # the CLI prints this line; a debug log keeps default output from repeating it
        "target: train acc %.3f, test acc %.3f%s",
        train_acc,
        test_acc,
        f", epsilon {eps:.3g}" if eps is not None else "",
    )

    def shadows() -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
        return train_shadows(
            build, x, y, num_shadows=cfg.shadows, train=cfg.train_config, dp=cfg.dp_config,
            seed=derive_seed(cfg.seed, "shadows"), device=device, cache_dir=cache, key_parts=_key_parts(cfg),
            vectorize=cfg.vectorize, progress=progress,
        )  # fmt: skip

    found = audit(cfg, x, y, members, pop_x, pop_y, target, shadows, timings, epsilon=eps, device=device)
    result = MembershipResult(
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        epsilon=eps,
        epsilon_unit="record" if eps is not None else None,  # DP-SGD protects one training record
        delta=cfg.defense.delta if eps is not None else None,
        accountant=dp.accountant if eps is not None and dp is not None else None,
        attacks=found.metrics,
        shadows=found.shadows,
        timings=timings,
        dp_history=history,
    )
    if out_dir is not None:
        write_audit(Path(out_dir), cfg, result, found.scores, members, eps)
    return result


@dataclass(frozen=True)
class Audit:
    """Each attack's metrics and scores over the pool, and how the shadows were trained."""

    metrics: dict[str, dict[str, Any]]
    scores: dict[str, np.ndarray]
    shadows: dict[str, Any] | None


def audit(
    cfg: MIAConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    members: np.ndarray,
    pop_x: torch.Tensor,
    pop_y: torch.Tensor,
    target: nn.Module,
    shadows: Callable[[], tuple[list[nn.Module], np.ndarray, dict[str, Any]]],
    timings: dict[str, float],
    *,
    epsilon: float | None,
    device: torch.device,
) -> Audit:
    """Query the target (and the shadows, trained by ``shadows()`` when an attack needs them) on
    the pool and the population, score every attack and evaluate it against ``members``, with the
    DP bound of a record-level ``epsilon`` where there is one."""
    attacks = {name: build_attack(name, **cfg.attack_options) for name in cfg.attacks}
    eps = epsilon
    trained: dict[str, Any] | None = None
    flip = cfg.query_flip
    kw: dict[str, Any] = {
        "labels": y,
        "target_logits": query_logits(target, x, flip=flip, device=device),
    }
    if len(pop_x):
        kw.update(
            population_labels=pop_y,
            target_population_logits=query_logits(target, pop_x, flip=flip, device=device),
        )
    if any(a.needs_shadows for a in attacks.values()):
        t0 = time.perf_counter()
        models, inside, info = shadows()
        timings["shadows_s"] = time.perf_counter() - t0
        trained = info
        kw.update(
            shadow_in=torch.from_numpy(inside),
            shadow_logits=torch.stack([query_logits(m, x, flip=flip, device=device) for m in models]),
        )
        if len(pop_x):
            kw["shadow_population_logits"] = torch.stack(
                [query_logits(m, pop_x, flip=flip, device=device) for m in models]
            )
    obs = MembershipObservation(**kw)

    scores: dict[str, np.ndarray] = {}
    found: dict[str, dict[str, Any]] = {}
    for name, attack in attacks.items():
        attack.check(obs)
        scores[name] = attack.score(obs)
        m = evaluate(
            scores[name],
            members,
            fprs=cfg.fprs,
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
            epsilon=eps,
            delta=cfg.defense.delta,
        )
        if cfg.one_run_guesses:
            k = cfg.one_run_guesses
            m.update(one_run_audit(scores[name], members, k_pos=k, k_neg=k, delta=cfg.defense.delta).as_dict())
        fitted = attack.fitted(obs)
        if fitted:
            m["fitted"] = fitted
        found[name] = m
        if m.get("bound_violated"):
            log.warning(
                "WARNING: %s exceeds the DP bound at epsilon=%.3g (%d significant points): "
                "a bug or an accounting error",
                name, eps, int(m["significant_violations"]),
            )  # fmt: skip
    return Audit(found, scores, trained)


def write_audit(
    out: Path,
    cfg: MIAConfig,
    result: MembershipResult,
    scores: dict[str, np.ndarray],
    members: np.ndarray,
    eps: float | None,
    **arrays: np.ndarray,
) -> None:
    """``scores.npz`` (the member mask, each attack's scores and ``arrays``), ``metrics.json`` and the ROC figure."""
    buf = io.BytesIO()
    np.savez(buf, members=members, **arrays, **{f"score_{k}": v for k, v in scores.items()})
    atomic_write_bytes(out / "scores.npz", buf.getvalue())
    atomic_write_json(out / "metrics.json", result.to_json())
    title = f"{cfg.dataset} {cfg.model}, {cfg.defense.name}" + (f" ε={eps:.3g}" if eps is not None else "")
    plot_roc(
        {k: (v, members) for k, v in scores.items()},
        out / "roc.png",
        epsilon=eps,
        delta=cfg.defense.delta,
        title=title,
    )
