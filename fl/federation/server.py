"""The ServerApp's round loop: sampling, training, aggregation, evaluation, capture, checkpoint.

Flower's ``Strategy.start`` always begins at round 1 and samples with the global ``random``
module over node ids that change from run to run, so it cannot resume. This loop calls the
same strategy hooks (``configure_train`` / ``aggregate_train``) in the same order, but samples
*clients* (partition ids) with a generator derived from the seed and the round, sums replies
in client order, and checkpoints every round, so a resumed run ends bit-identical.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx, Strategy

from fl.core.errors import ConfigError
from fl.federation.capture import AGGREGATE, CAPTURE_MODES, CaptureWriter
from fl.federation.checkpoint import Checkpoint
from fl.federation.curious_strategy import CuriousStrategy, record_metrics
from fl.federation.discovery import CLIENT_KEY, SampledGrid, discover_clients
from fl.federation.local_training import evaluate
from fl.federation.sampling import attacked_clients, planned_rounds, sample_clients
from fl.federation.secagg import secagg_round
from fl.federation.settings import ModelSpec, TrainSettings
from fl.seed import derive_seed

STRATEGIES = ("fedavg", "fedprox")
CLIENT_PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "releases")  # reply metrics

log = logging.getLogger("fedleak.federation")

RoundHook = Callable[[dict[str, Any], dict[str, torch.Tensor]], dict[str, Any]]


@dataclass(frozen=True)
class ServerSpec:
    """The federation as the server runs it."""

    model: ModelSpec
    num_clients: int
    num_rounds: int
    settings: TrainSettings
    fraction: float = 1.0  # share of clients sampled per round, in (0, 1]
    strategy: str = "fedavg"  # fedavg | fedprox
    seed: int = 0
    capture: str = "attacked"  # all | attacked | none
    attack_clients: int = 0  # clients per round whose update is attacked (captured under "attacked")
    stop_after_round: int = 0  # test hook: stop (as if killed) after checkpointing this round
    timeout: float = 3600.0  # seconds to wait for replies in a round
    max_client_examples: int = 1000  # largest client dataset: SecAgg+'s bound on a client's weight

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.num_clients < 1:
            raise ConfigError(f"--clients must be >= 1, got {self.num_clients}")
        if self.num_rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.num_rounds}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; valid choices: {', '.join(STRATEGIES)}")
        if self.capture not in CAPTURE_MODES:
            raise ConfigError(f"unknown capture mode {self.capture!r}; valid choices: {', '.join(CAPTURE_MODES)}")
        if self.attack_clients < 0 or self.attack_clients > self.clients_per_round:
            raise ConfigError(
                f"--attack-clients {self.attack_clients} must be between 0 and the "
                f"{self.clients_per_round} clients sampled per round"
            )

    @property
    def clients_per_round(self) -> int:
        return max(1, int(self.num_clients * self.fraction))


def build_strategy(spec: ServerSpec) -> Strategy:
    """Flower's FedAvg or FedProx on the Message API; sampling is done by the loop (see module doc)."""
    common: dict[str, Any] = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": 1,
        "min_available_nodes": 1,
    }
    if spec.strategy == "fedprox":
        return FedProx(proximal_mu=spec.settings.proximal_mu, **common)
    return FedAvg(**common)


@dataclass(frozen=True)
class ClientReply:
    """What the server keeps of one client's reply besides its update."""

    client: int
    loss: float
    metrics: dict[str, Any]  # what the client reports besides its update (loss, its epsilon, ...)


@dataclass(frozen=True)
class Exchange:
    """One round's traffic: the new global weights, the replies, the clients that failed."""

    weights: dict[str, torch.Tensor]
    replies: list[ClientReply]
    failed: list[int]


@dataclass
class FederationServer:
    """Runs ``spec`` on a Flower grid; ``defense`` is duck-typed like ``defenses.base.Defense``.

    Each round: plan (sample, choose attacked clients) -> exchange (plain Message API round, or
    SecAgg+ when ``defense.secure_aggregation``) -> evaluate -> hooks (attacks) -> checkpoint.
    """

    spec: ServerSpec
    run_dir: Path
    initial_weights: dict[str, torch.Tensor]
    test_data: tuple[torch.Tensor, torch.Tensor]
    defense: Any = None
    on_round: RoundHook | None = None
    resume: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    result: Checkpoint | None = None
    _planned: dict[int, int] = field(default_factory=dict, init=False, repr=False)  # client -> planned rounds

    @property
    def secure_aggregation(self) -> bool:
        return bool(getattr(self.defense, "secure_aggregation", False))

    def run(self, grid: Grid) -> Checkpoint:
        spec = self.spec
        ckpt = Checkpoint.load(self.run_dir) if self.resume and Checkpoint.exists(self.run_dir) else None
        if ckpt is not None:  # safetensors sorts keys; Flower's DP wrappers pair arrays by position
            ckpt.weights = {k: ckpt.weights[k] for k in self.initial_weights}
        ckpt = ckpt or Checkpoint(weights=self.initial_weights)
        if ckpt.defense_state and hasattr(self.defense, "load_state_dict"):
            self.defense.load_state_dict(ckpt.defense_state)
        writer = CaptureWriter(self.run_dir, spec.model) if spec.capture != "none" else None
        inner = build_strategy(spec)
        if self.defense is not None:
            inner = self.defense.wrap_strategy(
                inner, num_rounds=spec.num_rounds, clients_per_round=spec.clients_per_round, seed=spec.seed
            )
        strategy = CuriousStrategy(inner, writer=writer)
        roster = discover_clients(grid, spec.timeout, spec.num_clients)
        self._planned = planned_rounds(spec.seed, spec.num_rounds, spec.num_clients, spec.clients_per_round)
        model = spec.model.build().to(self.device)
        for server_round in range(ckpt.server_round + 1, spec.num_rounds + 1):
            ckpt = self._round(server_round, grid, strategy, roster, ckpt, model)
            if spec.stop_after_round and server_round >= spec.stop_after_round:
                break
        self.result = ckpt
        return ckpt

    def _round(
        self,
        server_round: int,
        grid: Grid,
        strategy: CuriousStrategy,
        roster: dict[int, int],
        ckpt: Checkpoint,
        model: torch.nn.Module,
    ) -> Checkpoint:
        start = time.perf_counter()
        sampled, attacked, capture = self._plan(server_round)
        strategy.begin_round(node_to_client=roster, sampled=sampled, capture=capture)
        exchange = self._exchange_secagg if self.secure_aggregation else self._exchange
        traffic = exchange(server_round, grid, strategy, roster, sampled, ckpt)
        record = self._evaluate(server_round, model, traffic, sampled, attacked, ckpt)
        if self.on_round is not None:
            record.update(self.on_round(record, traffic.weights))
        record["wall_s"] = time.perf_counter() - start
        state = self.defense.state_dict() if hasattr(self.defense, "state_dict") else {}
        ckpt = Checkpoint(server_round, traffic.weights, [*ckpt.history, record], state)
        ckpt.save(self.run_dir)
        return ckpt

    def _plan(self, server_round: int) -> tuple[list[int], list[int], set[int]]:
        """This round's sampled clients, attacked clients and captured clients."""
        spec = self.spec
        sampled = sample_clients(spec.seed, server_round, spec.num_clients, spec.clients_per_round)
        attacked = attacked_clients(spec.seed, server_round, sampled, spec.attack_clients)
        capture = set(sampled) if spec.capture == "all" else set(attacked) if spec.capture == "attacked" else set()
        return sampled, attacked, capture

    def _exchange(
        self,
        server_round: int,
        grid: Grid,
        strategy: CuriousStrategy,
        roster: dict[int, int],
        sampled: list[int],
        ckpt: Checkpoint,
    ) -> Exchange:
        """A Message API round: the strategy configures, clients train, the strategy aggregates."""
        node_of = {c: n for n, c in roster.items()}
        view = SampledGrid(grid, [node_of[c] for c in sampled])
        config = ConfigRecord(dict(self.spec.settings.to_config()))
        messages = [
            _with_client_config(m, self._client_config(roster[m.metadata.dst_node_id]))
            for m in strategy.configure_train(server_round, ArrayRecord(ckpt.weights), config, view)
        ]
        received = list(grid.send_and_receive(messages, timeout=self.spec.timeout))
        # The grid sets each sent message's id; an error the SuperLink answers for a node that went
        # away comes from the SuperLink itself, so its sender is read off the message it answers.
        dst_of = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}

        def sender(msg: Message) -> int:
            node = msg.metadata.src_node_id
            node = node if node in roster else dst_of.get(msg.metadata.reply_to_message_id, -1)
            return roster.get(node, -1)

        stray = [m for m in received if sender(m) < 0]
        if stray:
            log.warning(
                "round %d: %d repl(ies) answering none of this round's messages dropped", server_round, len(stray)
            )
        received = sorted((m for m in received if sender(m) >= 0), key=sender)
        replies, errors = [], {}
        for msg in received:
            client = sender(msg)
            if msg.has_error():
                errors[client] = msg.error.reason
                continue
            msg.content = RecordDict({k: v for k, v in msg.content.items() if k != CLIENT_KEY})
            metrics = dict(record_metrics(msg.content))
            replies.append(ClientReply(client, float(cast(float, metrics.get("train-loss", math.nan))), metrics))
        failed = self._failures(server_round, sampled, {r.client for r in replies}, errors)
        aggregated, _ = strategy.aggregate_train(server_round, received)
        weights = aggregated.to_torch_state_dict() if aggregated is not None else ckpt.weights
        return Exchange(weights, replies, failed)

    def _failures(
        self,
        server_round: int,
        sampled: list[int],
        answered: set[int],
        errors: dict[int, str | None],
        *,
        missing: str = "",
    ) -> list[int]:
        """Sampled clients without a usable reply: an error, or no reply within the timeout (logged).

        ``missing`` says why a client has neither reply nor error (default: the timeout).
        """
        failed = sorted(set(sampled) - answered)
        for client in failed:
            why = errors.get(client, missing or f"no reply within the {self.spec.timeout:g} s timeout")
            log.warning("round %d: client %d failed: %s", server_round, client, why)
        return failed

    def _exchange_secagg(
        self,
        server_round: int,
        grid: Grid,
        strategy: CuriousStrategy,
        roster: dict[int, int],
        sampled: list[int],
        ckpt: Checkpoint,
    ) -> Exchange:
        """A SecAgg+ round: the server (and its capture) only learns the weighted mean."""
        node_of = {c: n for n, c in roster.items() if c in sampled}
        config = dict(self.spec.settings.to_config()) | {"server-round": server_round}
        strategy.record_global(server_round, ckpt.weights, config, captured=[AGGREGATE])
        options = {"max_weight": float(self.spec.max_client_examples), **self.defense.secagg_options()}
        outcome = secagg_round(
            grid,
            server_round=server_round,
            node_of=node_of,
            weights=ckpt.weights,
            config=config,
            client_configs={c: self._client_config(c) for c in sampled},
            options=options,
            seed=derive_seed(self.spec.seed, "secagg", server_round),
            timeout=self.spec.timeout,
        )
        replies = [
            ClientReply(r.client, float(r.metrics.get("train-loss", math.nan)), dict(r.metrics))
            for r in outcome.replies
        ]
        if outcome.weights is None:
            halted = "the SecAgg+ round halted: too few clients survived it"
            return Exchange(ckpt.weights, [], self._failures(server_round, sampled, set(), {}, missing=halted))
        survivors = {r.client for r in replies}
        strategy.record_aggregate(
            server_round, outcome.weights, sum(r.num_examples for r in outcome.replies), sorted(survivors)
        )
        dropped = "dropped out of the SecAgg+ round (an error, or no reply within the timeout)"
        return Exchange(outcome.weights, replies, self._failures(server_round, sampled, survivors, {}, missing=dropped))

    def _client_config(self, client: int) -> dict[str, Any]:
        """What only this client is told: its planned participations (dp-local plans its noise for them)."""
        return {"client-rounds": self._planned[client]}

    def _evaluate(
        self,
        server_round: int,
        model: torch.nn.Module,
        traffic: Exchange,
        sampled: list[int],
        attacked: list[int],
        ckpt: Checkpoint,
    ) -> dict[str, Any]:
        """The round's record: held-out accuracy and loss of the new global model, privacy spent."""
        model.load_state_dict(traffic.weights)
        loss, accuracy = evaluate(model, *self.test_data)
        losses = [r.loss for r in traffic.replies if not math.isnan(r.loss)]  # no losses under DP
        record: dict[str, Any] = {
            "round": server_round,
            "accuracy": accuracy,
            "loss": loss,
            "sampled": sampled,
            "attacked": attacked,
            "failed": traffic.failed,
        }
        if losses:  # clients under a DP defense do not report their loss (data-dependent, unaccounted)
            record["train_loss"] = float(np.mean(losses))
        record.update(self._privacy(ckpt, traffic.replies))
        return record

    def _privacy(self, ckpt: Checkpoint, replies: list[ClientReply]) -> dict[str, Any]:
        """Epsilon spent so far with its unit and delta, and what each accountant was given this round.

        ``epsilon`` is the worst client's (a client-side accountant: dp-local, ldp) or the server's
        (dp-central); ``privacy`` holds the parameters the accountants composed, so every figure
        can be recomputed from the record alone.
        """
        unit = getattr(self.defense, "privacy_unit", None)
        if unit is None:
            return {}
        clients = {
            str(r.client): {k: _number(r.metrics[k]) for k in CLIENT_PRIVACY_KEYS if k in r.metrics}
            for r in replies
            if "epsilon" in r.metrics
        }
        server = self.defense.round_record() if hasattr(self.defense, "round_record") else {}
        values = [c["epsilon"] for c in clients.values()] + [h["epsilon"] for h in ckpt.history if "epsilon" in h]
        if "epsilon" in server:
            values.append(float(server["epsilon"]))
        out: dict[str, Any] = {"epsilon_unit": unit, "delta": float(self.defense.delta)}
        if values:
            out["epsilon"] = max(values)
        out["privacy"] = {"clients": clients} if clients else server
        return out


def _number(value: Any) -> float | list[float]:
    """A reply metric as a float, or a list of floats (an accountant history)."""
    return [float(v) for v in value] if isinstance(value, list) else float(value)


def _with_client_config(message: Message, extra: dict[str, Any]) -> Message:
    """A copy of a train message whose config also carries ``extra`` (this client's own entries)."""
    content = RecordDict(dict(message.content.items()))
    key = next(k for k, v in message.content.items() if isinstance(v, ConfigRecord))
    content[key] = ConfigRecord({**dict(cast(ConfigRecord, message.content[key])), **extra})
    return Message(
        content=content, dst_node_id=message.metadata.dst_node_id, message_type=message.metadata.message_type
    )


def final_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The global weights of the last completed round of a run."""
    return Checkpoint.load(run_dir).weights
