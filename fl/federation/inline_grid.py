"""A serial, in-process Grid: the ClientApp runs in this thread, one message after another.

It speaks the same Message API as Flower's simulation engine (same ServerApp loop, same
ClientApp, same mods) without Ray, so the round loop, checkpoints and the curious capture
can be tested in seconds and debugged with a plain debugger. Messages are deep-copied in
both directions, as the wire would.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fl.federation.client import ReplyLost

if TYPE_CHECKING:
    from flwr.proto.node_pb2 import NodeInfo
    from flwr.supercore.run import Run

NODE_OFFSET = 1000  # node ids differ from partition ids, as in Flower's simulation


class InlineGrid(Grid):
    """``num_clients`` nodes, node ``NODE_OFFSET + i`` holding partition ``i``."""

    def __init__(self, client_app: ClientApp, num_clients: int) -> None:
        self.app = client_app
        self.contexts = {
            NODE_OFFSET + i: Context(
                run_id=0,
                node_id=NODE_OFFSET + i,
                node_config={"partition-id": i, "num-partitions": num_clients},
                state=RecordDict(),
                run_config={},
            )
            for i in range(num_clients)
        }
        self._run: Run | None = None
        # Messages read their run and sender from the process-wide task identity, which the
        # SuperLink sets for a real ServerApp; this grid plays the SuperLink.
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 0, 0

    def set_run(self, run_id: Run) -> None:
        self._run = run_id

    @property
    def run(self) -> Run | None:  # type: ignore[override]  # None until set_run (Grid declares Run)
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def get_nodes(self) -> Iterable[NodeInfo]:
        return []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("InlineGrid delivers synchronously: use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("InlineGrid delivers synchronously: use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for message in messages:
            context = self.contexts[message.metadata.dst_node_id]
            try:
                reply = self.app(copy.deepcopy(message), context)
            except ReplyLost:  # the reply never arrives: the server's wait times out
                continue
            except Exception as exc:  # a failing client becomes an error reply, as in Flower
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)
            replies.append(copy.deepcopy(reply))
        return replies
