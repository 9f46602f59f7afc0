"""Which Flower node is which client: node discovery and a per-round view of the sampled nodes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl.core.errors import FedleakError

if TYPE_CHECKING:
    from flwr.supercore.run import Run

CLIENT_KEY = "fedleak"  # ConfigRecord of client bookkeeping (partition id, defense state)


class SampledGrid(Grid):
    """A view of ``grid`` exposing only this round's sampled nodes to the strategy."""

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        self._grid, self._nodes = grid, node_ids

    def set_run(self, run_id: Run) -> None:
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
            raise FedleakError(
                f"only {len(nodes)} of {expected} clients connected within {timeout:.0f} s; under flwr run, "
                f"give the federation as many SuperNodes as clients: --federation-config 'num-supernodes={expected}'"
            )
        time.sleep(0.2)
    messages = [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]
    roster: dict[int, int] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            raise FedleakError(f"client discovery failed: {reply.error.reason}")
        roster[reply.metadata.src_node_id] = int(cast(int, reply.content[CLIENT_KEY]["partition-id"]))
    if len(roster) != len(nodes):
        raise FedleakError(f"only {len(roster)} of {len(nodes)} clients answered the discovery query")
    return roster
