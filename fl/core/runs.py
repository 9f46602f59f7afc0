"""Run directories and atomic, code-free persistence.

Every command writes a run directory holding ``config.json`` (the resolved config),
``env.json`` (seed, package versions, device, command line) and its results. Files are
written atomically (temp file + ``os.replace``) so a crash never leaves a half-written
result, and tensors are stored with safetensors, which cannot execute code on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

TRACKED_PACKAGES = ("fedleak", "torch", "flwr", "ray", "opacus", "numpy", "scipy", "click")


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one).

    The file gets ``mode``, or by default the permissions of a plain ``open()`` (0o666 less the
    umask), not the owner-only mode of the temporary file it is written through.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, default_file_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, tensors and numpy scalars into JSON-friendly values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return obj.item()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy array
        return obj.tolist()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_tensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Store tensors with safetensors (no pickle, so loading cannot run code), atomically."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=dict(metadata or {}))
    atomic_write_bytes(path, data)


def load_tensors(path: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Load tensors written by :func:`save_tensors`."""
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (missing ones are reported as absent)."""
    out: dict[str, str] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def environment_record(seed: int | None, device: torch.device | str) -> dict[str, Any]:
    """What a run must record to be reproduced: seed, versions, device, platform, command."""
    dev = torch.device(device)
    rec: dict[str, Any] = {
        "seed": seed,
        "device": str(dev),
        "versions": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        rec["gpu"] = torch.cuda.get_device_name(dev)
    return rec


def init_run_dir(out: str | Path, *, config: Any, seed: int | None, device: torch.device | str) -> Path:
    """Create ``out`` and record the resolved config and environment in it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config)
    atomic_write_json(out / "env.json", environment_record(seed, device))
    return out
