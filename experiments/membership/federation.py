"""``run_federation_mia``: black-box membership inference against a Flower federation's global model.

The protocol of :func:`experiments.membership.central.run_mia`, with a federated target: one pool of
records of the training split is split at random into members and non-members; the members are
dealt to the clients (IID) of a real Flower federation (the same ServerApp, ClientApp and
defense code as ``fedleak simulate``, run in process); its final global model is the target.
Every shadow model is the final global model of the same federation (clients, rounds, local
training, defense) run on its own random half of the pool, so LiRA and RMIA compare the target
with models trained by the very recipe that trained it. Shadows are cached like the central
audit's, keyed by the recipe, the pool and the code.

Client-level inference asks whether a client took part: a client's score is the mean score of
its records; the clients of the run are compared with as many groups of non-member records of
the same sizes (random "clients" that did not take part).

The target's run directory (``OUT/target``) holds every captured update, so the curious
server's own scores (``fedleak mia --federated OUT/target``) audit the same federation.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from attacks.membership.base import build_attack
from attacks.membership.metrics import evaluate
from attacks.membership.shadows import cache_key, paired_assignment, stored_assignment
from attacks.membership.training import accuracy
from defenses import build_defense
from experiments.federated.config import SimulationConfig
from experiments.federated.federation import client_partitions, model_spec, run_federation
from experiments.membership.central import (
    audit,
    default_cache_dir,
    draw_indices,
    write_audit,
)
from experiments.membership.config import MIAConfig
from experiments.membership.owner import keep_owner_secret, owner_rng, owner_secret
from experiments.membership.results import MembershipResult
from fl.core.errors import ConfigError
from fl.core.runs import atomic_write_json, init_run_dir, load_tensors, save_tensors
from fl.data import load_dataset
from fl.federation.checkpoint import Checkpoint
from fl.federation.settings import TrainSettings
from fl.seed import derive_seed

log = logging.getLogger("fedleak.mia")


def simulation_config(
    cfg: MIAConfig, *, seed: int, data_root: str | Path | None, client_secret: str | None = None, capture: str = "none"
) -> SimulationConfig:
    """The federation of ``cfg``'s target (or, with the attacker's ``seed`` and secret, of a shadow)."""
    return SimulationConfig(
        dataset=cfg.dataset,
        model=cfg.model,
        model_options=dict(cfg.model_options),
        norm=cfg.norm,
        clients=cfg.clients,
        rounds=cfg.rounds,
        train=TrainSettings(
            local_epochs=cfg.local_epochs,
            local_steps=cfg.local_steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            optimizer=cfg.optimizer,
            momentum=cfg.momentum if cfg.optimizer == "sgd" else 0.0,
        ),
        defense=cfg.defense,
        capture=capture,
        engine="inline",
        data_dir=None if data_root is None else str(data_root),
        seed=seed,
        client_secret=client_secret,
    )


def global_model(
    sim: SimulationConfig, weights: dict[str, torch.Tensor], shape: tuple[int, int, int], num_classes: int
) -> nn.Module:
    """The federation's model with ``weights`` (its final global ones; eval mode: no dropout)."""
    model = model_spec(sim, build_defense(sim.defense), shape, num_classes).build()
    model.load_state_dict(weights)
    return model.eval()


def shadow_secret(seed: int, index: int) -> str:
    """The attacker's own clients' secret for shadow federation ``index`` (the attacker runs them)."""
    return hashlib.sha256(f"fedleak shadow federation {seed} {index}".encode()).hexdigest()


def code_salt() -> str:
    """Hash of the code that trains a federation (fl, defenses, the federation driver, this module)
    and of torch's, Opacus' and Flower's versions."""
    import flwr
    import opacus

    import defenses
    import experiments.federated
    import fl

    files = sorted(
        {
            *Path(inspect.getfile(fl)).parent.rglob("*.py"),
            *Path(inspect.getfile(defenses)).parent.glob("*.py"),
            *Path(inspect.getfile(experiments.federated)).parent.glob("*.py"),
            Path(__file__),
        }
    )
    h = hashlib.sha256(f"torch {torch.__version__} opacus {opacus.__version__} flwr {flwr.__version__}".encode())
    for file in files:
        h.update(file.name.encode() + file.read_bytes())
    return h.hexdigest()[:12]


def train_shadow_federations(
    cfg: MIAConfig,
    pool: np.ndarray,
    labels: torch.Tensor,
    *,
    shape: tuple[int, int, int],
    num_classes: int,
    data_root: str | Path | None,
    cache_dir: Path,
    progress: bool,
    device: torch.device,
) -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
    """``cfg.shadows`` federations, each on its own half of ``pool`` (indices of the training
    split; complementary pairs, so each holds as many records as the target), and their (S, N)
    IN assignment; cached per shadow."""
    seed = derive_seed(cfg.seed, "shadows")
    recipe = simulation_config(cfg, seed=0, data_root=None).server_dict() | {"seed": None}
    parts = {"federated_shadows": recipe, "num_shadows": cfg.shadows, "seed": seed, "code": code_salt()}
    key = cache_key(parts, torch.as_tensor(pool), labels[torch.as_tensor(pool)])
    folder = cache_dir / key
    inside = stored_assignment(
        folder, cfg.shadows, len(pool), seed=derive_seed(seed, "assignment"), draw=paired_assignment
    )
    atomic_write_json(folder / "config.json", parts)
    models, reused = [], 0
    for s in tqdm(range(cfg.shadows), desc="shadow federations", unit="federation", disable=None if progress else True):
        sim = simulation_config(
            cfg, seed=derive_seed(seed, "shadow", s), data_root=data_root, client_secret=shadow_secret(seed, s)
        )
        file = folder / f"shadow_{s}.safetensors"
        if file.is_file():
            models.append(global_model(sim, load_tensors(file), shape, num_classes))
            reused += 1
            continue
        with tempfile.TemporaryDirectory(prefix="fedleak-shadow-") as tmp:
            run_federation(sim, out_dir=tmp, device=device, progress=False, records=pool[inside[s]])
            model = global_model(sim, Checkpoint.load(tmp).weights, shape, num_classes)
        save_tensors(file, model.state_dict())
        models.append(model)
    return models, inside, {"path": "federation", "cache_key": key, "reused": reused, "trained": cfg.shadows - reused}


OUTSIDE_GROUPS = 100  # non-member "clients" drawn for the client-level audit (at least as many as clients)


def client_level(
    scores: dict[str, np.ndarray],
    members: np.ndarray,
    clients: list[np.ndarray],
    *,
    cfg: MIAConfig,
    epsilon: float | None,
) -> dict[str, dict[str, float]]:
    """Per attack, the audit of "did this client take part": each client's score is the mean of
    its records' scores, against random groups of non-member records of the clients' sizes.

    ``clients``: each client's positions in the pool. Each of the ``max(OUTSIDE_GROUPS, clients)``
    non-member groups is an independent draw (groups may share records), so the false-positive
    side is resolved finely even for a federation of few clients; the true-positive side has one
    point per client, and the bootstrap treats the groups as independent. ``epsilon`` bounds the
    result only when it protects one client (the caller passes None otherwise).
    """
    rng = np.random.default_rng(derive_seed(cfg.seed, "client-level"))
    outside = np.flatnonzero(~members)
    sizes = [len(c) for c in clients]
    groups = list(clients) + [
        rng.choice(outside, size=min(sizes[k % len(sizes)], len(outside)), replace=False)
        for k in range(max(OUTSIDE_GROUPS, len(clients)))
    ]
    took_part = np.arange(len(groups)) < len(clients)
    return {
        name: evaluate(
            np.array([s[g].mean() for g in groups]),
            took_part,
            fprs=cfg.fprs,
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
            epsilon=epsilon,
            delta=cfg.defense.delta,
        )
        for name, s in scores.items()
    }


def run_federation_mia(
    cfg: MIAConfig,
    *,
    device: torch.device | str,
    data_root: str | Path | None = None,
    out_dir: str | Path,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    secret: str | None = None,
) -> MembershipResult:
    """Run the audit of a federated target (``cfg.clients`` > 0) into ``out_dir``.

    ``secret``: the data owners' (:mod:`experiments.membership.owner`), which draws the members
    and is the target's clients' secret (as ``fedleak simulate --client-secret-file``: their
    keys, batches, masks and noise derive from it), for a target that repeats bit for bit; None
    draws a fresh one, kept in ``OUT/owner/secret`` and on the clients' side of ``OUT/target``.

    Returns what :func:`experiments.membership.central.run_mia` returns (accuracies, the federation's
    epsilon with its unit and delta, per-attack metrics) plus ``client_level`` (per attack) and
    ``target_run`` (the federation's run directory, for ``fedleak mia --federated``).
    """
    if not cfg.federated:
        raise ConfigError("run_federation_mia audits a federated target: set clients > 0")
    device = torch.device(device)
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    train = load_dataset(cfg.dataset, split="train", root=data_root)
    secret = owner_secret(secret)
    pool, pop, members = draw_indices(cfg, len(train.labels), secret)  # refuses an oversized pool before writing
    init_run_dir(out, config=cfg, seed=cfg.seed, device=device)
    keep_owner_secret(secret, out)
    x, y = train.images[torch.as_tensor(pool)], train.labels[torch.as_tensor(pool)]
    pop_x, pop_y = train.images[torch.as_tensor(pop)], train.labels[torch.as_tensor(pop)]
    timings: dict[str, float] = {}

    shadows_needed = any(build_attack(a, **cfg.attack_options).needs_shadows for a in cfg.attacks)
    log.info(
        "training the target federation%s: %d clients x %d rounds each, on %d members",
        f" and up to {cfg.shadows} shadow federations" if shadows_needed else "",
        cfg.clients,
        cfg.rounds,
        int(members.sum()),
    )
    t0 = time.perf_counter()
    # the members in the owner's order: the public seed's IID split then deals them (client_partitions)
    # without telling which member went to which client
    dealt = pool[members][owner_rng(secret, "deal").permutation(int(members.sum()))]
    sim = simulation_config(cfg, seed=cfg.seed, data_root=data_root, capture="all", client_secret=secret)
    with tqdm(total=cfg.rounds, desc="target federation", unit="round", disable=None if progress else True) as bar:
        fed = run_federation(
            sim, out_dir=out / "target", device=device, progress=lambda _: bar.update(1), records=dealt
        )
    target = global_model(sim, Checkpoint.load(out / "target").weights, train.shape, train.num_classes)
    timings["target_s"] = time.perf_counter() - t0
    eps, unit = fed.epsilon, fed.epsilon_unit

    def shadows() -> tuple[list[nn.Module], np.ndarray, dict[str, Any]]:
        return train_shadow_federations(
            cfg,
            pool,
            train.labels,
            shape=train.shape,
            num_classes=train.num_classes,
            data_root=data_root,
            cache_dir=cache,
            progress=progress,
            device=device,
        )

    bounded = replace(cfg, defense=replace(cfg.defense, delta=fed.delta or cfg.defense.delta))
    # the record-level audit is bounded by a record-level epsilon only (a client-level epsilon
    # bounds a record by group privacy only, about (2 eps, (1 + e^eps) delta): not applied)
    record_eps = eps if unit == "record" else None
    found = audit(bounded, x, y, members, pop_x, pop_y, target, shadows, timings, epsilon=record_eps, device=device)
    where = {int(i): k for k, i in enumerate(pool)}
    clients = [np.array([where[int(i)] for i in part]) for part in client_partitions(sim, train.labels, dealt)]
    result = MembershipResult(
        train_accuracy=accuracy(target, x[members], y[members], device=device),
        test_accuracy=accuracy(target, x[~members], y[~members], device=device),
        epsilon=eps,
        epsilon_unit=unit,
        delta=fed.delta,
        # dp-local: the clients' Opacus accountant; dp-central: Flower's RDP accountant
        accountant=None if eps is None else cfg.defense.accountant if unit == "record" else "rdp",
        attacks=found.metrics,
        shadows=found.shadows,
        timings=timings,
        target_run=str(out / "target"),
        federation_accuracy=fed.final_accuracy,
        # a central-DP epsilon protects a client against viewers of the global models who cannot guess
        # the run's seed, which draws the server's noise (fl.privacy_units); this auditor's attacks do
        # not use the seed, though config.json records it
        client_level=client_level(
            found.scores, members, clients, cfg=bounded, epsilon=eps if unit and unit.startswith("client") else None
        ),
    )
    write_audit(out, cfg, result, found.scores, members, record_eps, pool=pool)
    return result
