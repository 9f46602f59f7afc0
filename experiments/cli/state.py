"""Global CLI options shared by every command through click's context object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import torch

SEED = click.IntRange(0, 2**32 - 1)
"""Valid seeds: NumPy takes only non-negative seeds, and derived seeds keep the low 32 bits."""


@dataclass(frozen=True)
class CliState:
    """``--device``, ``--seed`` and verbosity, as given on the command line."""

    device_name: str = "auto"
    seed: int = 0
    verbosity: int = 0

    @property
    def device(self) -> torch.device:
        from fl.device import resolve_device  # torch loads only when a command needs a device

        return resolve_device(self.device_name)


def get_state(ctx: click.Context | None = None) -> CliState:
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(CliState)
    return obj if obj is not None else CliState()
