"""``run_federation``: compose data, model, defense, the curious server and its attack, then simulate.

The driver reads like the protocol (breaching's layout): data -> model -> defense -> server
(curious) -> clients -> simulate -> per-round attack -> results in the run directory.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.inversion.cost import CostBudget, admit
from defenses import build_defense
from experiments.federated.config import SimulationConfig, unreplayable_steps
from experiments.federated.epsilon import epsilon_text
from experiments.federated.results import FederationResult
from fl.core.errors import ConfigError, DataError, FedleakError
from fl.core.runs import atomic_write_json, atomic_write_text, init_run_dir, read_json
from fl.data import DATASETS, load_dataset, partition
from fl.data.partition_file import partition_file_name, save_partition_file
from fl.federation.capture import CaptureStore, write_partitions
from fl.federation.checkpoint import Checkpoint
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.client_side import DirectoryStore, new_client_secret, read_client_secret
from fl.federation.engine import simulate
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec
from fl.seed import derive_seed

log = logging.getLogger("fedleak.federation")
NO_LIMIT = CostBudget(seconds=math.inf, peak_bytes=math.inf)

ProgressFn = Callable[[dict[str, Any]], None]
CLIENT_DIR = "clients"  # RUN/clients: the clients' side (keys, accountants); the server never reads it
CLIENT_SECRET_FILE = "client_secret"  # in CLIENT_DIR: the secret the clients' keys derive from


def model_spec(cfg: SimulationConfig, defense: Any, shape: tuple[int, int, int], num_classes: int) -> ModelSpec:
    """The federated model: the user's model options, then the defense's overrides (dropout rate, placement)."""
    overrides = {**cfg.model_options, **defense.model_overrides()}
    dropout = float(overrides.pop("dropout", 0.0))
    return ModelSpec(cfg.model, tuple(shape), num_classes, dropout=dropout, norm=cfg.norm, options=overrides)


def client_partitions(
    cfg: SimulationConfig, labels: torch.Tensor, records: np.ndarray | None = None
) -> list[np.ndarray]:
    """Each client's indices into the training split: ``records`` (default: all of it) split by
    ``cfg.partition``, each part capped at ``cfg.client_examples``."""
    chosen = np.arange(len(labels)) if records is None else np.asarray(records, dtype=np.int64)
    parts = partition(
        labels[torch.as_tensor(chosen)].numpy(), cfg.clients, scheme=cfg.partition, alpha=cfg.alpha, seed=cfg.seed
    )
    parts = [chosen[p] for p in parts]
    if cfg.client_examples:
        parts = [p[: cfg.client_examples] for p in parts]
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty:
        raise ConfigError(
            f"clients {empty} got no data under --partition {cfg.partition}; use fewer clients or a larger --alpha"
        )
    return parts


def _attack_hook(
    cfg: SimulationConfig, run_dir: Path, images: torch.Tensor, device: torch.device, labels: torch.Tensor | None = None
) -> Callable:
    """Per-round hook: the curious server attacks the captured updates of the attacked clients."""
    from experiments.federated.attacking import attack_captured, save_outcome_grid

    def on_round(record: dict[str, Any], weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        r = record["round"]
        if r not in cfg.rounds_attacked:
            return {}
        store = CaptureStore(run_dir)
        targets = [(r, c) for c in store.clients(r) if c in record["attacked"] or c == "aggregate"]
        if not targets:
            return {}
        try:
            outcomes = attack_captured(
                store,
                targets,
                cfg.attack,
                images,
                iters=cfg.attack_iters,
                seed=derive_seed(cfg.seed, "attack", r),
                device=device,
                options=cfg.attack_options,
                train_labels=labels,
                budget=NO_LIMIT,  # checked once for every round before the federation started (compose)
            )
        except FedleakError:
            raise
        except (ArithmeticError, RuntimeError, ValueError) as exc:  # e.g. label recovery on a diverged model
            log.warning("round %d: %s attack failed: %s", r, cfg.attack, exc)
            return {"attack": cfg.attack, "attack_error": f"{type(exc).__name__}: {exc}"}
        for o in outcomes:
            save_outcome_grid(o, run_dir / "attacks" / f"{cfg.attack}_round{r:04d}_{o.client}.png")
        scores = {
            str(o.client): {
                "psnr": o.psnr,
                "ssim": o.ssim,
                **({} if o.label_acc is None else {"label_acc": o.label_acc}),
            }
            for o in outcomes
        }
        out: dict[str, Any] = {"attack": cfg.attack, "attack_scores": scores}
        if outcomes:
            out["attack_psnr"] = float(np.mean([o.psnr for o in outcomes]))
        if unscored := sorted({str(c) for _, c in targets} - set(scores)):
            out["attack_unscored"] = unscored  # their updates hold no image (empty Poisson batches)
        return out

    return on_round


@dataclass(frozen=True)
class Composition:
    """Everything one federation is built from (shared by ``run_federation`` and ``flwr run``).

    ``train`` and ``partitions`` are empty when the nodes hold the data (``node_data``): then the
    server holds no client record and each SuperNode reads its own ``data-file``.
    """

    defense: Any
    train: Any  # fl.data.ImageDataset, or None when the nodes hold the data
    test: Any  # the server's held-out set, or None in a client process of a node-data run
    model: ModelSpec
    initial_model: torch.nn.Module
    partitions: list[np.ndarray]
    server_spec: ServerSpec
    client_spec: ClientSpec


def compose(
    cfg: SimulationConfig,
    *,
    device: torch.device | str = "cpu",
    client_dir: Path | None = None,
    records: np.ndarray | None = None,
    truth_dir: Path | None = None,
    node_data: bool = False,
    side: str = "both",
) -> Composition:
    """Data -> model (with the defense's overrides, checked by it) -> partitions -> server and client specs.

    ``records``: the indices of the training split the clients share (None: all of it; a
    membership audit gives its members). ``client_dir`` is where the clients keep their keys and
    defense state (None: each in Flower's per-run context state, or the ``client-dir`` of its
    SuperNode's node config). ``truth_dir``: where each client records what it trained on (None: its
    node config's ``truth-dir``, if any).
    ``node_data``: each SuperNode holds its own partition file (``data-file`` in its node config)
    and no process loads the training split; ``side`` ``"client"`` skips the server's test set.
    """
    defense = build_defense(cfg.defense)
    source = DATASETS.get(cfg.dataset)
    if node_data:
        if source is None:
            raise ConfigError(f"unknown dataset {cfg.dataset!r}; valid choices: {', '.join(sorted(DATASETS))}")
        if cfg.attack != "none":
            raise ConfigError(
                f"attack={cfg.attack!r} with the data on the nodes: the per-round attack is scored against the "
                "clients' records, which the server does not hold; run with attack='none' and attack the capture "
                "afterwards (fedleak attack RUN) once the nodes' truth is joined"
            )
        train, shape, num_classes = None, source.shape, len(source.classes)
    else:
        train = load_dataset(cfg.dataset, split="train", root=cfg.data_dir)
        shape, num_classes = train.shape, train.num_classes
    test = None if side == "client" else load_dataset(cfg.dataset, split="test", root=cfg.data_dir)
    spec = model_spec(cfg, defense, shape, num_classes)
    torch.manual_seed(cfg.seed)
    model = spec.build()
    defense.check_model(model)
    parts = [] if train is None else client_partitions(cfg, train.labels, records)
    if cfg.attack != "none":  # the per-round attack must be able to replay every client it may pick
        for why in filter(None, (unreplayable_steps(cfg.train, n) for n in sorted({len(p) for p in parts}))):
            raise ConfigError(why)
        from experiments.federated.attacking import planned_cost

        cost = planned_cost(
            cfg,
            spec,
            model.state_dict(),
            max(len(p) for p in parts),
            secure_aggregation=defense.secure_aggregation,
            device=device,
        )
        if cost is not None:
            admit(cost, CostBudget.from_env(), torch.device(device), what="the curious server's attacks: ")
    if defense.secure_aggregation and cfg.clients_per_round < 2:
        raise ConfigError(
            f"--defense secagg needs >= 2 clients per round to hide each one in the sum, got "
            f"{cfg.clients_per_round} (--clients {cfg.clients} x --fraction {cfg.fraction})"
        )
    # SecAgg+'s bound on a client's weight: without the partitions, the cap or the split's nominal size
    largest = max(len(p) for p in parts) if parts else cfg.client_examples or source.sizes["train"]
    server_spec = ServerSpec(
        model=spec,
        num_clients=cfg.clients,
        num_rounds=cfg.rounds,
        settings=cfg.train,
        fraction=cfg.fraction,
        strategy=cfg.strategy,
        seed=cfg.seed,
        capture=cfg.capture,
        attack_clients=cfg.attack_clients,
        stop_after_round=cfg.stop_after_round,
        max_client_examples=largest,
    )
    client_spec = ClientSpec(
        model=spec,
        dataset=cfg.dataset,
        partitions=tuple(parts),
        data_root=cfg.data_dir,
        client_secret=cfg.client_secret,
        settings_tag=cfg.settings_tag(),
        client_dir=str(client_dir) if client_dir is not None else None,
        device="cuda" if cfg.client_gpus > 0 else "cpu",
        truth_dir=str(truth_dir) if truth_dir is not None and cfg.capture != "none" else None,
        record_masks=cfg.record_masks,
        partition_tag=cfg.partition_tag() if node_data else "",
    )
    return Composition(defense, train, test, spec, model, parts, server_spec, client_spec)


def export_partitions(cfg: SimulationConfig, out_dir: str | Path) -> list[Path]:
    """Write each client's partition of ``cfg`` to ``out_dir/client_XXXX.npz`` for its SuperNode.

    The same partitions ``run_federation`` deals (same options, same seed); ``out_dir/truth`` gets
    the membership ground truth (who holds which record), to be joined into the run's ``truth``.
    """
    train = load_dataset(cfg.dataset, split="train", root=cfg.data_dir)
    parts = client_partitions(cfg, train.labels)
    out = Path(out_dir)
    paths = []
    for client, idx in enumerate(parts):
        paths.append(out / partition_file_name(client))
        sel = torch.as_tensor(idx)
        save_partition_file(
            paths[-1],
            dataset=cfg.dataset,
            client=client,
            images=train.images[sel],
            labels=train.labels[sel],
            indices=idx,
            tag=cfg.partition_tag(),
        )
    write_partitions(out / "truth", cfg.dataset, "train", parts)
    return paths


def make_server(
    cfg: SimulationConfig,
    comp: Composition,
    *,
    out: Path,
    device: torch.device,
    resume: bool = False,
    progress: bool | ProgressFn = False,
) -> FederationServer:
    """The curious server of ``cfg``: records truth for evaluation, attacks, reports each round."""
    if cfg.capture != "none" and comp.partitions:
        write_partitions(out / "truth", cfg.dataset, "train", comp.partitions)
    hook = _attack_hook(cfg, out, comp.train.images, device, comp.train.labels) if cfg.attack != "none" else None
    report = progress if callable(progress) else None

    def on_round(record: dict[str, Any], weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        extra = hook(record, weights) if hook is not None else {}
        if report is not None:
            report({**record, **extra})
        return extra

    return FederationServer(
        spec=comp.server_spec,
        run_dir=out,
        initial_weights={k: v.detach().clone() for k, v in comp.initial_model.state_dict().items()},
        test_data=(comp.test.images, comp.test.labels),
        defense=comp.defense,
        on_round=on_round,
        resume=resume,
        device=device,
    )


def run_federation(
    cfg: SimulationConfig,
    *,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    progress: bool | ProgressFn = True,
    resume: bool = False,
    verbose: bool = False,
    records: np.ndarray | None = None,
) -> FederationResult:
    """Run one federation into ``out_dir`` and return its final metrics.

    ``records``: the indices of the training split the clients share (default: all of it). Call it
    inside :func:`fl.federation.engine.ray_session` to share one Ray instance across runs.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    device = torch.device(device)
    if resume and (out / "config.json").is_file():
        saved = SimulationConfig.from_dict(read_json(out / "config.json"))
        if {**saved.server_dict(), "stop_after_round": 0} != {**cfg.server_dict(), "stop_after_round": 0}:
            raise ConfigError(f"--resume with options that differ from the run in {out}; rerun with the same options")
    clients = out / CLIENT_DIR
    resuming = resume and Checkpoint.exists(out)
    secret, new = clients_secret(clients, resume=resume, resuming=resuming, given=cfg.client_secret)
    cfg = replace(cfg, client_secret=secret)
    comp = compose(
        cfg, device=device, client_dir=clients, records=records, truth_dir=out / "truth"
    )  # refuses a bad composition before anything is written
    if new:  # new clients, new keys
        shutil.rmtree(clients, ignore_errors=True)
        atomic_write_text(clients / CLIENT_SECRET_FILE, secret + "\n", mode=0o600)
    if not resuming:
        init_run_dir(out, config=cfg.server_dict(), seed=cfg.seed, device=device)
    server = make_server(cfg, comp, out=out, device=device, resume=resume, progress=progress)
    client_app = make_client_app(comp.client_spec, comp.defense)
    if cfg.engine == "inline":
        server.run(InlineGrid(client_app, cfg.clients))
    else:
        simulate(
            server,
            client_app,
            num_clients=cfg.clients,
            client_cpus=cfg.client_cpus,
            client_gpus=cfg.client_gpus,
            verbose=verbose,
        )
    ckpt = server.result or Checkpoint.load(out)
    wall_s = time.perf_counter() - start
    return summarise(cfg, ckpt, out, wall_s, clients_epsilon=clients_epsilon(comp.defense, clients))


def clients_epsilon(defense: Any, client_dir: Path) -> float | None:
    """The worst client's epsilon by its own accountant (None without a client-side one).

    What the server's records hold is what the clients last reported; a client whose last reply
    was lost has spent more. The experimenter, who holds the clients' side, reads the truth here.
    """
    store = DirectoryStore(client_dir)
    spent = [defense.client_epsilon(store.load(c).state) for c in store.clients()]
    spent = [e for e in spent if e is not None]
    return max(spent) if spent else None


def clients_secret(clients: Path, *, resume: bool, resuming: bool, given: str | None) -> tuple[str, bool]:
    """The clients' secret of the run whose clients' side is ``clients``, and whether it is new.

    ``--resume`` continues with the secret kept there (a run stopped before its first checkpoint
    too, so clients that trained keep their accountants), and refuses another one, or a
    checkpointed run whose clients' side is gone. Otherwise: ``given``, else a fresh one.
    """
    path = clients / CLIENT_SECRET_FILE
    if resuming and not path.is_file():
        raise DataError(
            f"cannot resume {clients.parent}: its clients' side ({clients}) is gone, and with it their keys and "
            "privacy accountants; start a new run"
        )
    kept = read_client_secret(path) if resume and path.is_file() else None
    if kept is not None and given is not None and given != kept:
        raise ConfigError(
            f"--resume with a client secret other than the one the run's clients hold ({clients}); drop the option"
        )
    return (kept, False) if kept is not None else (given or new_client_secret(), True)


def summarise(
    cfg: SimulationConfig, ckpt: Checkpoint, out: Path, wall_s: float, *, clients_epsilon: float | None = None
) -> FederationResult:
    """Final metrics of a finished federation; also written to ``out/result.json`` with the history.

    ``epsilon`` is the larger of ``clients_epsilon`` (the clients' own accountants, when given) and
    the last round's record (what the server was told or spent).
    """
    last = ckpt.history[-1] if ckpt.history else {}
    spent = [e for e in (clients_epsilon, last.get("epsilon")) if e is not None]
    result = FederationResult(
        attack=cfg.attack,
        final_accuracy=last.get("accuracy"),
        final_loss=last.get("loss"),
        epsilon=max(spent) if spent else None,
        epsilon_unit=last.get("epsilon_unit"),
        delta=last.get("delta"),
        attack_psnr={h["round"]: h["attack_psnr"] for h in ckpt.history if "attack_psnr" in h},
        failures={h["round"]: h["failed"] for h in ckpt.history if h["failed"]},
        rounds_done=ckpt.server_round,
        wall_s=wall_s,
    )
    atomic_write_json(out / "result.json", {**result.to_json(), "history": ckpt.history})
    return result


def round_line(name: str, r: dict[str, Any], rounds: int) -> str:
    """One round's progress line: accuracy, loss, epsilon spent, attack score, failed clients."""
    parts = [f"[{name}] round {r['round']}/{rounds}", f"acc {r['accuracy']:.4f}", f"loss {r['loss']:.4f}"]
    if "epsilon" in r:
        parts.append(f"ε {epsilon_text(r['epsilon'], r['epsilon_unit'], r['delta'])}")
    if "attack_psnr" in r:
        parts.append(f"{r['attack']} PSNR {r['attack_psnr']:.1f} dB")
    if "attack_error" in r:
        parts.append(f"{r['attack']} failed: {r['attack_error']}")
    if r["failed"]:
        parts.append(f"failed clients {r['failed']}")
    return " | ".join(parts)
