"""Flower client mods that act on the outgoing update, and a guard for train-only mods.

A client mod ``(msg, ctxt, call_next) -> Message`` wraps the ClientApp (Flower's Message API).
:class:`UpdateMod` rewrites the *update* ``delta = reply - received`` (not the raw weights),
as top-k sparsification and quantization are defined on updates (Aji and Heafield, 2017;
Alistarh et al., 2017), and replies ``received + transform(delta)``.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import ERROR

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode
from flwr.supercore import log

from defenses.base import ClientMod

UpdateTransform = Callable[[list[np.ndarray]], list[np.ndarray]]


class UpdateMod:
    """Client mod replacing each floating-point array's update by ``transform(deltas)``.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are passed through untouched.
    Messages other than ``train`` go straight to the app.
    """

    def __init__(self, name: str, transform: UpdateTransform) -> None:
        self.name = name
        self.transform = transform

    def __call__(self, msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        if len(msg.content.array_records) != 1:
            return error_reply(msg, f"{self.name} expects exactly one ArrayRecord in the train message")
        received = next(iter(msg.content.array_records.values()))
        out = call_next(msg, ctxt)
        if out.has_error():
            return out
        if len(out.content.array_records) != 1:
            return error_reply(msg, f"{self.name} expects exactly one ArrayRecord in the reply")
        key, sent = next(iter(out.content.array_records.items()))
        if list(sent.keys()) != list(received.keys()):
            return error_reply(msg, f"{self.name}: the reply's arrays do not match the received ones")
        before = received.to_numpy_ndarrays()
        after = sent.to_numpy_ndarrays()
        floating = [i for i, a in enumerate(after) if np.issubdtype(a.dtype, np.floating)]
        deltas = self.transform([after[i] - before[i] for i in floating])
        for i, delta in zip(floating, deltas, strict=True):
            after[i] = (before[i] + delta).astype(after[i].dtype, copy=False)
        out.content.array_records[key] = ArrayRecord(
            {k: Array(np.asarray(v)) for k, v in zip(sent.keys(), after, strict=True)}
        )
        return out

    def __repr__(self) -> str:
        return f"UpdateMod({self.name})"


def train_only(mod: ClientMod) -> ClientMod:
    """Apply ``mod`` to train messages only (Flower's DP mods reject a query without arrays)."""

    def guarded(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        return mod(msg, ctxt, call_next)

    guarded.__name__ = getattr(mod, "__name__", type(mod).__name__)
    return guarded


def error_reply(msg: Message, reason: str) -> Message:
    """An error reply, as Flower's own mods send when a precondition fails."""
    log(ERROR, reason)
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=msg)
