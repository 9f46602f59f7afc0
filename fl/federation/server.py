"""The ServerApp's round loop: sampling, training, aggregation, evaluation, capture, checkpoint.

Flower's ``Strategy.start`` always begins at round 1 and samples with the global ``random``
module over node ids that change from run to run, so it cannot resume. This loop calls the
same strategy hooks (``configure_train`` / ``aggregate_train``) in the same order, but samples
*clients* (partition ids) with a generator derived from the seed and the round, sums replies
in client order, and checkpoints every round, so a resumed run ends bit-identical.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedProx, Strategy

from fl.errors import ConfigError, FedleakError
from fl.federation.capture import CAPTURE_MODES, CaptureWriter
from fl.federation.checkpoint import Checkpoint
from fl.federation.curious import CuriousStrategy, record_metrics
from fl.federation.settings import ModelSpec, TrainSettings
from fl.federation.task import evaluate
from fl.seed import derive_seed

STRATEGIES = ("fedavg", "fedprox")
CLIENT_KEY = "fedleak"  # ConfigRecord of client bookkeeping (partition id, defense state)
TRUTH_KEY = "truth"  # ConfigRecord of evaluation-only ground truth, stripped before the strategy

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


def sample_clients(seed: int, server_round: int, num_clients: int, k: int) -> list[int]:
    """The ``k`` clients of ``server_round``, a pure function of the seed (so resume samples the same)."""
    rng = np.random.default_rng(derive_seed(seed, "sample", server_round))
    return sorted(int(c) for c in rng.choice(num_clients, size=k, replace=False))


def attacked_clients(seed: int, server_round: int, sampled: list[int], k: int) -> list[int]:
    """The ``k`` sampled clients whose updates the curious server attacks this round."""
    rng = np.random.default_rng(derive_seed(seed, "attacked", server_round))
    return sorted(int(c) for c in rng.choice(sampled, size=k, replace=False)) if k else []


def build_strategy(spec: ServerSpec) -> Strategy:
    """Flower's FedAvg or FedProx on the Message API; sampling is done by the loop (see module doc)."""
    common = {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": 1, "min_available_nodes": 1}
    if spec.strategy == "fedprox":
        return FedProx(proximal_mu=spec.settings.proximal_mu, **common)
    return FedAvg(**common)


class SampledGrid(Grid):
    """A view of ``grid`` exposing only this round's sampled nodes to the strategy."""

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid, self._nodes = grid, node_ids

    def set_run(self, run_id: int) -> None:
        self._grid.set_run(run_id)

    @property
    def run(self) -> Any:
        return self._grid.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def get_nodes(self) -> Iterable[Any]:
        return [n for n in self._grid.get_nodes() if n.node_id in self._nodes]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)


def discover_clients(grid: Grid, timeout: float, expected: int) -> dict[int, int]:
    """Wait for ``expected`` nodes, ask each for its partition id (a ``query`` message).

    Returns node id -> client id. Nodes may still be registering when the ServerApp starts.
    """
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise FedleakError(f"only {len(nodes)} of {expected} clients connected within {timeout:.0f} s")
        time.sleep(0.2)
    messages = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]
    roster: dict[int, int] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            raise FedleakError(f"client discovery failed: {reply.error.reason}")
        roster[reply.metadata.src_node_id] = int(reply.content[CLIENT_KEY]["partition-id"])
    if len(roster) != len(nodes):
        raise FedleakError(f"only {len(roster)} of {len(nodes)} clients answered the discovery query")
    return roster


@dataclass
class FederationServer:
    """Runs ``spec`` on a Flower grid; ``defense`` is duck-typed like ``defenses.base.Defense``."""

    spec: ServerSpec
    run_dir: Path
    initial_weights: dict[str, torch.Tensor]
    test_data: tuple[torch.Tensor, torch.Tensor]
    defense: Any = None
    on_round: RoundHook | None = None
    resume: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    result: Checkpoint | None = None

    def run(self, grid: Grid) -> Checkpoint:
        spec = self.spec
        ckpt = Checkpoint.load(self.run_dir) if self.resume and Checkpoint.exists(self.run_dir) else None
        ckpt = ckpt or Checkpoint(weights=self.initial_weights)
        if ckpt.defense_state and hasattr(self.defense, "load_state_dict"):
            self.defense.load_state_dict(ckpt.defense_state)
        writer = CaptureWriter(self.run_dir, spec.model) if spec.capture != "none" else None
        inner = build_strategy(spec)
        if self.defense is not None:
            inner = self.defense.wrap_strategy(inner, num_rounds=spec.num_rounds, clients_per_round=spec.clients_per_round)
        strategy = CuriousStrategy(inner, writer=writer)
        roster = discover_clients(grid, spec.timeout, spec.num_clients)
        node_of = {c: n for n, c in roster.items()}
        model = spec.model.build().to(self.device)
        for server_round in range(ckpt.server_round + 1, spec.num_rounds + 1):
            ckpt = self._round(server_round, grid, strategy, roster, node_of, ckpt, model)
            if spec.stop_after_round and server_round >= spec.stop_after_round:
                break
        self.result = ckpt
        return ckpt

    def _round(self, server_round, grid, strategy, roster, node_of, ckpt, model) -> Checkpoint:
        spec, start = self.spec, time.perf_counter()
        # Flower's DP wrappers draw noise from NumPy's global RNG: seed it per round so a resumed
        # run draws the same noise as an uninterrupted one.
        np.random.seed(derive_seed(spec.seed, "server-noise", server_round))
        sampled = sample_clients(spec.seed, server_round, spec.num_clients, spec.clients_per_round)
        attacked = attacked_clients(spec.seed, server_round, sampled, spec.attack_clients)
        capture = set(sampled) if spec.capture == "all" else set(attacked) if spec.capture == "attacked" else set()
        strategy.begin_round(node_to_client=roster, sampled=sampled, capture=capture)
        arrays = ArrayRecord(ckpt.weights)
        config = ConfigRecord(dict(spec.settings.to_config()))
        view = SampledGrid(grid, [node_of[c] for c in sampled])
        messages = [
            _with_client_state(m, ckpt.client_states.get(str(roster[m.metadata.dst_node_id]), {}))
            for m in strategy.configure_train(server_round, arrays, config, view)
        ]
        replies = sorted(grid.send_and_receive(messages, timeout=spec.timeout), key=lambda r: roster.get(r.metadata.src_node_id, -1))
        failed, eps, losses = [], [], []
        for reply in replies:
            client = roster[reply.metadata.src_node_id]
            if reply.has_error():
                failed.append(client)
                continue
            own = reply.content[CLIENT_KEY]
            ckpt.client_states[str(client)] = json.loads(str(own["client-state"]))
            if TRUTH_KEY in reply.content and strategy.writer is not None and client in capture:
                strategy.writer.write_truth(server_round, client, list(reply.content[TRUTH_KEY]["indices"]))
            reply.content = RecordDict({k: v for k, v in reply.content.items() if k not in (CLIENT_KEY, TRUTH_KEY)})
            metrics = record_metrics(reply.content)
            losses.append(float(metrics["train-loss"]))
            if "epsilon" in metrics:
                eps.append(float(metrics["epsilon"]))
        aggregated, _ = strategy.aggregate_train(server_round, replies)
        weights = aggregated.to_torch_state_dict() if aggregated is not None else ckpt.weights
        model.load_state_dict(weights)
        loss, accuracy = evaluate(model, *self.test_data)
        record: dict[str, Any] = {
            "round": server_round,
            "accuracy": accuracy,
            "loss": loss,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "sampled": sampled,
            "attacked": attacked,
            "failed": failed,
        }
        epsilon = self._epsilon(ckpt, eps)
        if epsilon is not None:
            record["epsilon"] = epsilon
        if self.on_round is not None:
            record.update(self.on_round(record, weights))
        record["wall_s"] = time.perf_counter() - start
        state = self.defense.state_dict() if hasattr(self.defense, "state_dict") else {}
        ckpt = Checkpoint(server_round, weights, [*ckpt.history, record], ckpt.client_states, state)
        ckpt.save(self.run_dir)
        return ckpt

    def _epsilon(self, ckpt: Checkpoint, round_eps: list[float]) -> float | None:
        """Privacy spent so far: the worst client's (local DP) or the server's (central DP)."""
        server = self.defense.server_metrics().get("epsilon") if self.defense is not None else None
        past = [h["epsilon"] for h in ckpt.history if "epsilon" in h]
        values = [*round_eps, *past] + ([server] if server is not None else [])
        return max(values) if values else None


def _with_client_state(message: Message, state: dict[str, Any]) -> Message:
    """A copy of a train message carrying this client's defense state (held by the server)."""
    content = RecordDict(dict(message.content.items()))
    key = next(k for k, v in message.content.items() if isinstance(v, ConfigRecord))
    content[key] = ConfigRecord({**dict(message.content[key]), "client-state": json.dumps(state)})
    return Message(content=content, dst_node_id=message.metadata.dst_node_id, message_type=message.metadata.message_type)


def final_weights(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The global weights of the last completed round of a run."""
    return Checkpoint.load(run_dir).weights
