"""Device selection shared by every command (``--device auto|cpu|cuda``)."""

from __future__ import annotations

import torch

from fl.core.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:N]`` into a :class:`torch.device`.

    ``auto`` picks CUDA when available; asking for ``cuda`` without a GPU is a user error.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was requested but no CUDA device is available; use cpu or auto")
        return torch.device(name)
    raise ConfigError(f"unknown device {name!r}; valid choices: {', '.join(DEVICE_CHOICES)}")
