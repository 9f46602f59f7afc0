"""The honest-but-curious server: a strategy wrapper that records what it sends and receives.

It wraps the whole server stack (outermost, like Flower's DP wrappers wrap a strategy), so it
sees every reply exactly as it arrives from the network: clipped and noised by client mods
(local DP, client-side clipping), but before server-side clipping or central DP noise,
which act on the aggregate (Geyer et al., 2017; McMahan et al., 2018). The threat model is
that of Inverting Gradients (Geiping et al., NeurIPS 2020): the server follows the protocol
and tries to reconstruct client data from the updates it legitimately receives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fl.federation.capture import AGGREGATE, CaptureWriter
from fl.federation.strategy_wrapper import StrategyWrapper


def record_arrays(content: Any) -> ArrayRecord:
    """The one ArrayRecord of a message content (Flower replies carry exactly one)."""
    return next(iter(content.array_records.values()))


def record_metrics(content: Any) -> MetricRecord:
    return next(iter(content.metric_records.values()))


class CuriousStrategy(StrategyWrapper):
    """Delegate every hook to ``strategy``; record the global model and the chosen clients' updates.

    Before each round the server loop calls :meth:`begin_round` with the node-to-client map and
    the clients to capture (all sampled, the attacked ones, or none).
    """

    def __init__(self, strategy: Strategy, *, writer: CaptureWriter | None) -> None:
        super().__init__(strategy)
        self.writer = writer
        self.node_to_client: dict[int, int] = {}
        self.capture: set[int] = set()
        self.sampled: list[int] = []
        self._before: dict[str, torch.Tensor] = {}

    def begin_round(self, *, node_to_client: dict[int, int], sampled: list[int], capture: set[int]) -> None:
        self.node_to_client = node_to_client
        self.sampled = sampled
        self.capture = capture

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        if messages:
            sent = messages[0].content
            asked = dict(next(iter(sent.config_records.values())))
            self.record_global(
                server_round, record_arrays(sent).to_torch_state_dict(), asked, captured=sorted(self.capture)
            )
        return messages

    def record_global(
        self, server_round: int, weights: dict[str, torch.Tensor], config: dict[str, Any], *, captured: list[int | str]
    ) -> None:
        """Record the global weights and train config sent this round (also used by the SecAgg+ round)."""
        self._before = {k: v.detach().clone() for k, v in weights.items()}
        if self.writer is not None:
            info = {"config": config, "sampled": self.sampled, "captured": captured}
            self.writer.write_global(server_round, self._before, info)

    def record_aggregate(
        self, server_round: int, weights: dict[str, torch.Tensor], num_examples: int, clients: list[int]
    ) -> None:
        """Under SecAgg+: record the unmasked aggregate, the only update the server ever sees, and
        which clients it sums (the round's survivors, which the server knows)."""
        if self.writer is not None:
            delta = {k: weights[k].float() - self._before[k].float() for k in weights}
            meta = {
                "num_examples": num_examples,
                "num_clients": len(clients),
                "clients": ",".join(map(str, sorted(clients))),
            }
            self.writer.write_update(server_round, AGGREGATE, delta, meta)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.writer is not None:
            for msg in replies:
                client = self.node_to_client.get(msg.metadata.src_node_id)
                if msg.has_error() or client not in self.capture:
                    continue
                received = record_arrays(msg.content).to_torch_state_dict()
                delta = {k: received[k].float() - self._before[k].float() for k in received}
                meta = {"num_examples": int(cast(int, record_metrics(msg.content)["num-examples"]))}
                self.writer.write_update(server_round, client, delta, meta)
        return self.strategy.aggregate_train(server_round, replies)
