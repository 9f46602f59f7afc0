"""What a client keeps to itself: its secret key and its defense state (e.g. its privacy accountant).

Every random draw a client makes (minibatch order, dropout masks, DP-SGD noise and Poisson
batches, the NumPy draws of Flower's client mods such as ``LocalDpMod`` and SecAgg+'s
stochastic rounding) comes from a 128-bit **client key** and the client's own participation
counter. The server never receives either, and no file on the server's side records them, so a
curious server holding the run's seed, config and every captured update cannot regenerate a
client's masks or noise. The key comes from the OS (``secrets``), as a real client's would, or,
for bit-identical reruns, from a ``client_seed`` the experimenter gives the clients only.

The counter only grows, and each participation draws fresh randomness from it: a server that
sends the same round twice (or resends an old state) gets fresh noise, never the same noise
twice, and every release is accounted.

The record lives where the client lives: a directory of the client's (``fedleak simulate``
gives ``RUN/clients/``, a SuperNode its ``client-dir`` node config), so a resumed run continues
every accountant where it stopped; without one, in Flower's per-run ``context.state``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from flwr.app import ConfigRecord, Context

from fl.runs import atomic_write_json, read_json
from fl.seed import private_numpy_seed, private_seed

KEY_BITS = 128
STATE_RECORD = "fedleak-client"  # ConfigRecord name in context.state


@dataclass(frozen=True)
class ClientKey:
    """A client's secret: the root of all its randomness."""

    value: int

    @classmethod
    def create(cls, client_seed: int | None, client: int) -> ClientKey:
        """A fresh key from the OS, or, given the experimenter's ``client_seed``, a reproducible one."""
        if client_seed is None:
            return cls(secrets.randbits(KEY_BITS))
        words = private_numpy_seed(client_seed, "client-key", client)
        return cls(sum(w << (32 * i) for i, w in enumerate(words)))

    def seed(self, *labels: int | str) -> int:
        """A 63-bit seed for one purpose (``"train", participation``), e.g. for a torch generator."""
        return private_seed(self.value, *labels)

    def numpy_seed(self, *labels: int | str) -> list[int]:
        """Seed words for NumPy's global RNG, from which Flower's client mods draw."""
        return private_numpy_seed(self.value, *labels)


@dataclass(frozen=True)
class ClientRecord:
    """A client's key, how many times it has trained, and its defense state."""

    key: ClientKey
    participations: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    client_seed: int | None = None  # recorded so a resume can refuse a different --client-seed

    def after(self, state: dict[str, Any]) -> ClientRecord:
        """The record after one more participation that left the defense ``state``."""
        return replace(self, participations=self.participations + 1, state=dict(state))

    def to_json(self) -> dict[str, Any]:
        return {
            "key": f"{self.key.value:032x}",
            "participations": self.participations,
            "state": self.state,
            "client_seed": self.client_seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientRecord:
        return cls(ClientKey(int(data["key"], 16)), int(data["participations"]), dict(data["state"]), data.get("client_seed"))


class ClientStore(Protocol):
    """Where a client keeps its :class:`ClientRecord` between rounds."""

    def load(self, client: int) -> ClientRecord | None: ...

    def save(self, client: int, record: ClientRecord) -> None: ...


class DirectoryStore:
    """One JSON file per client in a directory of the client's, written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, client: int) -> Path:
        return self.root / f"client_{client:04d}.json"

    def load(self, client: int) -> ClientRecord | None:
        path = self.path(client)
        return ClientRecord.from_json(read_json(path)) if path.is_file() else None

    def save(self, client: int, record: ClientRecord) -> None:
        atomic_write_json(self.path(client), record.to_json())


class ContextStore:
    """The record in Flower's ``context.state`` (kept by the SuperNode for the length of one run)."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def load(self, client: int) -> ClientRecord | None:
        record = self.context.state.config_records.get(STATE_RECORD)
        return ClientRecord.from_json(json.loads(str(record["record"]))) if record is not None else None

    def save(self, client: int, record: ClientRecord) -> None:
        self.context.state[STATE_RECORD] = ConfigRecord({"record": json.dumps(record.to_json())})


def client_store(client_dir: str | None, context: Context) -> ClientStore:
    """The client's store: its directory when it has one, else Flower's per-run context state."""
    return DirectoryStore(client_dir) if client_dir else ContextStore(context)


def open_record(store: ClientStore, client: int, client_seed: int | None) -> ClientRecord:
    """The client's record, created with a new key on its first participation."""
    record = store.load(client)
    if record is None:
        record = ClientRecord(ClientKey.create(client_seed, client), client_seed=client_seed)
        store.save(client, record)
    return record
