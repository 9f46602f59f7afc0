"""Hand-made Flower messages for testing mods and strategy wrappers without Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


@dataclass
class FlowerKit:
    """Build train messages and replies, and run a client mod on them."""

    def train_message(self, arrays: list[np.ndarray], config: dict | None = None, node: int = 1) -> Message:
        content = RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(config or {})})
        return Message(content, dst_node_id=node, message_type=MessageType.TRAIN)

    def reply(self, msg: Message, arrays: list[np.ndarray], num_examples: int = 10) -> Message:
        metrics = MetricRecord({"num-examples": num_examples})
        return Message(RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}), reply_to=msg)

    def context(self, node: int = 1) -> Context:
        return Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={})

    def run_mod(self, mod: Callable, sent: list[np.ndarray], returned: list[np.ndarray], **config) -> Message:
        """Send ``sent`` through ``mod`` to an app that replies ``returned``; the reply that leaves."""
        msg = self.train_message(sent, config)
        return mod(msg, self.context(), lambda m, c: self.reply(m, [a.copy() for a in returned]))


@pytest.fixture
def flower(monkeypatch: pytest.MonkeyPatch) -> FlowerKit:
    """Messages need a run identity, which Flower's runtime sets in a real run."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    return FlowerKit()


class StaticGrid(Grid):
    """A grid that only lists its nodes: enough for a strategy's ``configure_train``."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def set_run(self, run_id):  # pragma: no cover - not used by configure_train
        raise NotImplementedError

    @property
    def run(self):  # pragma: no cover
        raise NotImplementedError

    def create_message(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError

    def push_messages(self, messages):  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids):  # pragma: no cover
        raise NotImplementedError

    def send_and_receive(self, messages, *, timeout=None):  # pragma: no cover
        raise NotImplementedError


@pytest.fixture
def grid() -> StaticGrid:
    return StaticGrid([1, 2, 3])
