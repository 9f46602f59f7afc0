"""What a client keeps to itself: its secret key and its defense state (e.g. its privacy accountant).

Every random draw a client makes (minibatch order, dropout masks, DP-SGD noise and Poisson
batches, the NumPy draws of Flower's client mods such as ``LocalDpMod`` and SecAgg+'s
stochastic rounding) comes from a 128-bit **client key** and the client's own participation
counter. The server never receives either, and no file on the server's side records them, so a
curious server holding the run's seed, config and every captured update cannot regenerate a
client's masks or noise. A key is drawn from the OS, as a real client's would be, or derived
with a keyed hash (BLAKE2b) from a **client secret** of at least 128 bits that only the clients
hold, the run's public settings (:func:`settings_tag`) and the client's id: the same secret and
settings give a bit-identical rerun, while any other settings give other keys, so one secret
never hands two different runs the same noise.

The counter only grows, and each participation draws fresh randomness from it: a server that
sends the same round twice gets fresh noise, never the same noise twice, and every release is
accounted.

The record lives where the client lives: a directory of the client's (``fedleak simulate``
gives ``RUN/clients/``, a SuperNode its ``client-dir`` node config), so a resumed run continues
every accountant where it stopped; without one, in Flower's per-run ``context.state``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from flwr.app import ConfigRecord, Context

from fl.core.errors import ConfigError
from fl.core.runs import atomic_write_json, read_json
from fl.seed import private_numpy_seed, private_seed

KEY_BYTES = 16  # 128-bit keys and secrets
STATE_RECORD = "fedleak-client"  # ConfigRecord name in context.state


def new_client_secret() -> str:
    """A fresh client secret from the OS: 32 hex digits."""
    return secrets.token_hex(KEY_BYTES)


def check_client_secret(secret: str) -> str:
    """``secret`` stripped, if it is hex with at least 128 bits; else one-line ``ConfigError``.

    A shorter secret could be guessed: the derivation is public, so the server would try them all.
    """
    text = secret.strip().lower()
    if len(text) < 2 * KEY_BYTES or any(c not in "0123456789abcdef" for c in text) or len(text) % 2:
        raise ConfigError(
            f"a client secret must be an even number of at least {2 * KEY_BYTES} hex digits (128 bits), got "
            f"{len(text)} characters: a shorter one could be guessed by the server"
        )
    return text


def settings_tag(settings: Mapping[str, Any]) -> str:
    """A public digest of a run's settings (what the server's ``config.json`` holds)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class ClientKey:
    """A client's secret: the root of all its randomness."""

    value: int

    @classmethod
    def derive(cls, secret: str | None, tag: str, client: int, data: str = "") -> ClientKey:
        """The key of ``client``: BLAKE2b keyed by the clients' ``secret`` over (settings ``tag``, client,
        digest of its ``data``); a fresh key from the OS without a secret.

        The data digest makes one secret give other keys on other data: two runs on neighbouring
        datasets (a DP audit) never share noise, even with the same settings and secret.
        """
        if secret is None:
            return cls(secrets.randbits(8 * KEY_BYTES))
        digest = hashlib.blake2b(
            f"{tag}/{client}/{data}".encode(),
            key=bytes.fromhex(secret)[:64],
            digest_size=KEY_BYTES,
            person=b"fedleak-client",
        ).digest()
        return cls(int.from_bytes(digest, "big"))

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

    def after(self, state: dict[str, Any]) -> ClientRecord:
        """The record after one more participation that left the defense ``state``."""
        return replace(self, participations=self.participations + 1, state=dict(state))

    def to_json(self) -> dict[str, Any]:
        return {
            "key": f"{self.key.value:032x}",
            "participations": self.participations,
            "state": self.state,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientRecord:
        return cls(ClientKey(int(data["key"], 16)), int(data["participations"]), dict(data["state"]))


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

    def clients(self) -> list[int]:
        """The clients with a record here, ascending."""
        return sorted(int(p.stem.split("_")[1]) for p in self.root.glob("client_*.json"))

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


def open_record(store: ClientStore, client: int, secret: str | None, tag: str, data: Callable[[], str]) -> ClientRecord:
    """The client's record, created with its key on its first participation (``data`` gives its data digest)."""
    record = store.load(client)
    if record is None:
        record = ClientRecord(ClientKey.derive(secret, tag, client, data() if secret is not None else ""))
        store.save(client, record)
    return record


def data_digest(*tensors: Any) -> str:
    """SHA-256 of tensors' bytes (a client's images, labels and dataset indices)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_client_secret(path: str | Path) -> str:
    """The client secret in file ``path`` (checked); one-line ``ConfigError`` when unreadable."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the client secret file {str(path)!r}: {err.strerror}") from None
    return check_client_secret(text)
