"""The data owner's secret: the root of an audit's private randomness.

In the membership game the data owner decides which pool records train the target (the members)
and trains it (its Poisson batches, DP noise, dropout masks); the attacker knows the recipe,
the pool, the population, the public seed and the target, not those draws. Deriving them from
the public ``--seed`` would let anyone holding the run's ``config.json`` redraw the members (a
perfect "attack") or the DP noise (no privacy). They derive from a 128-bit secret instead: a
fresh one from the OS, kept on the owner's side (``OUT/owner/secret``), or one the user gives
(``--secret-file``) for an audit that repeats bit for bit. The target's initial weights, the
pool, the population and everything the attacker trains (shadows) stay on the public seed.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np

from fl.core.runs import atomic_write_text
from fl.federation.client_side import check_client_secret, new_client_secret
from fl.seed import private_seed

OWNER_DIR = "owner"  # OUT/owner: the data owner's side; no attack reads it
SECRET_FILE = "secret"


def owner_secret(given: str | None) -> str:
    """``given`` (checked: 128 bits or more of hex) or a fresh secret from the OS."""
    return check_client_secret(given) if given is not None else new_client_secret()


def keep_owner_secret(secret: str, out_dir: Path) -> Path:
    """Write the secret to ``out_dir/owner/secret`` (mode 0600), where the owner keeps it."""
    path = Path(out_dir) / OWNER_DIR / SECRET_FILE
    atomic_write_text(path, secret + "\n", mode=0o600)
    return path


def owner_seed(secret: str, *keys: int | str) -> int:
    """A 63-bit child seed of the secret: drawn from all of its bits, too many to enumerate."""
    return private_seed(int(secret, 16), *keys)


def owner_rng(secret: str, *keys: int | str) -> np.random.Generator:
    """A NumPy generator of the owner's (the member draw)."""
    return np.random.default_rng(owner_seed(secret, *keys))


def keyed_digest(secret: str, text: str) -> str:
    """HMAC-SHA-256 of ``text`` under the secret (16 hex digits): a cache name that depends on the
    members but lets nobody without the secret test a guessed member set against it."""
    return hmac.new(bytes.fromhex(secret), text.encode(), hashlib.sha256).hexdigest()[:16]
