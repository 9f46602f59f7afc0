"""``run_federated_mia``: a curious server's membership audit of captured client updates.

For one captured round, each client's update is attacked with candidate records drawn from the
federation's own dataset split: members are records the client trained on that round, non-members
records the client never held (other clients' records or unassigned ones), so both come from one
source. FedMIA uses every captured round of the client (Zhu et al.: all rounds are evidence).
Client-level inference then asks which captured client holds each member record (argmax of
``grad-cosine`` over the clients' updates).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attacks.membership.federated import (
    FEDERATED_ATTACKS,
    attribute_records,
    fedmia,
    fedmia_rounds,
    gradient_stats,
    per_sample_stats,
)
from attacks.membership.metrics import DEFAULT_FPRS, evaluate
from attacks.membership.plots import plot_roc
from experiments.membership.config import parse_fprs
from experiments.membership.results import ServerSideResult
from fl.core.errors import ConfigError, DataError
from fl.core.runs import atomic_write_bytes, atomic_write_json, init_run_dir
from fl.core.schema import at_least, check_bounds, setting
from fl.seed import derive_seed

log = logging.getLogger("fedleak.mia")


@dataclass(frozen=True)
class FederatedMIAConfig:
    """Which round, clients and attacks of a captured federation to audit (``fedleak mia --federated``).

    ``attacks``, ``fprs`` and ``bootstrap`` share their options with the black-box audit's
    (:class:`~experiments.membership.config.MIAConfig`); ``clients`` is the repeatable ``--client``.
    """

    attacks: tuple[str, ...] = setting(
        ("grad-cosine", "grad-diff", "grad-norm", "fedmia"), help="The server's attack(s).", flag="--attack"
    )
    server_round: int | None = setting(
        None, help="--federated: round to attack (default: the last captured).", flag="--round"
    )
    clients: tuple[int, ...] = setting(
        (), help="--federated: client(s) to attack (default: all captured).", flag="--client", cli=False
    )
    candidates: int = setting(500, help="--federated: members (and non-members) per client.", bounds=at_least(1))
    fprs: tuple[float, ...] = setting(DEFAULT_FPRS, help="FPRs for TPR@FPR.", flag="--fpr", parse=parse_fprs)
    bootstrap: int = setting(200, help="Bootstrap replicates for CIs (0: none).", bounds=at_least(0))
    seed: int = setting(0, help="Seed of the candidates and the bootstrap (the global --seed).", cli=False)

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.attacks:
            raise ConfigError("give at least one attack")
        for name in self.attacks:
            FEDERATED_ATTACKS.get(name)
        for f in self.fprs:
            if not 0.0 < f < 1.0:
                raise ConfigError(f"FPR {f} is outside (0, 1)")


def _pick_round(store: Any, wanted: int | None) -> int:
    rounds = store.rounds()
    if not rounds:
        raise DataError(f"{store.run_dir} holds no captured rounds")
    if wanted is None:
        return rounds[-1]
    if wanted not in rounds:
        raise ConfigError(f"round {wanted} was not captured; captured rounds: {', '.join(map(str, rounds))}")
    return wanted


def fedmia_rounds_of(store: Any, client: int, audited: int) -> list[int]:
    """The captured rounds in which ``client`` and at least one other client were captured (FedMIA's
    evidence), the audited round among them."""
    from fl.federation.capture import AGGREGATE

    rounds = []
    for t in store.rounds():
        captured = [c for c in store.clients(t) if c != AGGREGATE]
        if client in captured and len(captured) > 1:
            rounds.append(t)
    return sorted(set(rounds) | {audited})


def _round_stats(store: Any, t: int, client: int, data: Any, cand: np.ndarray, device: torch.device | str) -> Any:
    """Gradient statistics of candidate records ``cand`` against ``client``'s update of round ``t``."""
    from fl.federation.capture import AGGREGATE

    upd = store.load(t, client)
    refs = [store.load(t, c).update for c in store.clients(t) if c not in (client, AGGREGATE)]
    batch = upd.settings.batch_size or max(upd.num_examples, 1)
    return gradient_stats(
        upd.model.build(),
        upd.weights_before,
        upd.update,
        data.images[cand],
        data.labels[cand],
        step_weight=upd.settings.lr / batch,
        references=refs,
        device=device,
    )


def run_federated_mia(
    run_dir: str | Path,
    cfg: FederatedMIAConfig,
    *,
    device: torch.device | str,
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
) -> ServerSideResult:
    """Attack every selected client's update of one round; returns pooled and per-client metrics."""
    from fl.data import load_dataset
    from fl.federation.capture import AGGREGATE, CaptureStore

    store = CaptureStore(run_dir)
    rnd = _pick_round(store, cfg.server_round)
    captured = [c for c in store.clients(rnd) if c != AGGREGATE]
    if not captured:
        raise DataError(f"round {rnd} holds no individual client update (secure aggregation?); nothing to attribute")
    clients = list(cfg.clients) or captured
    missing = sorted(set(clients) - set(captured))
    if missing:
        raise ConfigError(f"client(s) {missing} not captured in round {rnd}; captured: {', '.join(map(str, captured))}")
    if out_dir is not None:
        init_run_dir(
            out_dir,
            config={"run_dir": str(run_dir), **cfg.__dict__, "server_round": rnd},
            seed=cfg.seed,
            device=device,
        )
    ds = store.dataset()
    data = load_dataset(ds["dataset"], split=ds["split"], root=data_root)
    rng = np.random.default_rng(derive_seed(cfg.seed, "federated-mia", rnd))

    per_client: dict[str, Any] = {}
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in cfg.attacks}
    pooled_members: list[np.ndarray] = []
    owners: list[tuple[int, np.ndarray]] = []
    for client in clients:
        upd = store.load(rnd, client)
        model = upd.model.build()
        own = np.unique(store.true_indices(rnd, client))
        others = np.setdiff1d(np.arange(len(data.labels)), store.partition(client))
        k = min(cfg.candidates, len(own), len(others))
        if "fedmia" in cfg.attacks and len(captured) < 2:
            raise DataError(f"fedmia needs at least two captured clients in round {rnd}; got {captured}")
        if k < 1:
            raise DataError(f"client {client} in round {rnd} has no member or no non-member candidate")
        cand = np.r_[rng.choice(own, k, replace=False), rng.choice(others, k, replace=False)]
        members = np.r_[np.ones(k, bool), np.zeros(k, bool)]
        batch = upd.settings.batch_size or max(upd.num_examples, 1)
        refs = [store.load(rnd, c).update for c in captured if c != client]
        stats = gradient_stats(
            model, upd.weights_before, upd.update, data.images[cand], data.labels[cand],
            step_weight=upd.settings.lr / batch, references=refs, device=device,
        )  # fmt: skip
        per_client[str(client)] = {}
        for name in cfg.attacks:
            if name == "fedmia":  # every captured round of the client, not only the audited one
                rounds = fedmia_rounds_of(store, client, rnd)
                scores = fedmia_rounds(
                    [fedmia(stats if t == rnd else _round_stats(store, t, client, data, cand, device)) for t in rounds]
                )
                per_client[str(client)]["fedmia_rounds"] = rounds
            else:
                scores = FEDERATED_ATTACKS.get(name)(stats)
            pooled[name].append(scores)
            per_client[str(client)][name] = evaluate(scores, members, fprs=cfg.fprs, bootstrap=0)
        pooled_members.append(members)
        owners.append((client, cand[:k]))
    members_all = np.concatenate(pooled_members)
    scores_all = {name: np.concatenate(v) for name, v in pooled.items()}
    result = ServerSideResult(
        server_round=rnd,
        clients=clients,
        dataset=ds,
        attacks={
            name: evaluate(scores, members_all, fprs=cfg.fprs, bootstrap=cfg.bootstrap, seed=cfg.seed)
            for name, scores in scores_all.items()
        },
        per_client=per_client,
        attribution=_attribution(store, rnd, clients, owners, data, device) if len(clients) > 1 else None,
    )
    if out_dir is not None:
        out = Path(out_dir)
        buf = io.BytesIO()
        np.savez(buf, members=members_all, **{f"score_{k}": v for k, v in scores_all.items()})
        atomic_write_bytes(out / "scores.npz", buf.getvalue())
        atomic_write_json(out / "metrics.json", result.to_json())
        plot_roc(
            {k: (v, members_all) for k, v in scores_all.items()},
            out / "roc.png",
            title=f"round {rnd}, {len(clients)} client(s)",
        )
    return result


def _attribution(
    store: Any, rnd: int, clients: list, owners: list, data: Any, device: torch.device | str
) -> dict[str, float]:
    """Which client holds each member record: argmax over clients of the cosine with their updates."""
    updates = [store.load(rnd, c) for c in clients]
    model = updates[0].model.build()
    names = [n for n, _ in model.named_parameters()]
    idx = np.concatenate([c for _, c in owners])
    truth = np.concatenate([np.full(len(c), i) for i, (_, c) in enumerate(owners)])
    dirs = [{n: -u.update[n].double() for n in names} for u in updates]
    norms, dots = per_sample_stats(
        model, updates[0].weights_before, data.images[idx], data.labels[idx], dirs, device=device
    )
    unorm = torch.tensor([float(sum(d[n].pow(2).sum() for n in names)) ** 0.5 for d in dirs], dtype=torch.float64)
    cos = (dots / (norms[:, None] * unorm[None, :]).clamp_min(1e-30)).T.numpy()
    guess = attribute_records(cos)
    return {
        "accuracy": float((guess == truth).mean()),
        "chance": 1.0 / len(clients),
        "records": float(len(idx)),
    }
