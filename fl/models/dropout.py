"""Dropout whose mask can be observed and overridden.

Dropout (Srivastava et al., 2014) multiplies activations by a Bernoulli(1-p) mask
``M`` and rescales: ``x * M / (1 - p)``. A federated client draws ``M`` with its own
RNG, so a curious server never sees it. The Dropout Inversion Attack (Scheliga et al.,
AAAI 2023) therefore treats the masks as unknowns: it writes a real-valued mask into the
``mask`` buffer and optimizes it together with the image. The buffer is non-persistent,
so it never enters a state dict, and ``torch.func.functional_call`` can swap it for a
batched tensor, which lets one optimization attack many victims at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from fl.core.errors import ConfigError


class MaskedDropout(nn.Module):
    """Inverted dropout with an optional externally supplied mask.

    * ``mask`` buffer non-empty: ``x * mask / (1 - p)`` in any mode (attacker or oracle mask).
    * training, no mask: draw ``M ~ Bernoulli(1 - p)`` with ``generator`` (the client's RNG).
    * eval, no mask: identity.

    With ``record = True`` the last drawn mask is kept in ``last_mask`` (ground truth for the
    oracle attack and for tests; a real server never has it).
    """

    mask: torch.Tensor  # buffer (registered in __init__)

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {p}")
        self.p = float(p)
        self.register_buffer("mask", torch.empty(0), persistent=False)
        self.generator: torch.Generator | None = None
        self.record = False
        self.last_mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask.numel():
            return x * self.mask / (1.0 - self.p)
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        if self.record:
            self.last_mask = keep.detach()
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def dropout_sites(model: nn.Module, *, active_only: bool = True) -> Iterator[tuple[str, MaskedDropout]]:
    """Yield ``(name, module)`` for the model's dropout layers (only those with p > 0 by default)."""
    for name, module in model.named_modules():
        if isinstance(module, MaskedDropout) and (module.p > 0 or not active_only):
            yield name, module


def has_dropout(model: nn.Module) -> bool:
    """True when at least one dropout layer has p > 0."""
    return any(True for _ in dropout_sites(model))


def set_dropout_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Route every dropout layer's mask draws through ``generator`` (a client's private RNG)."""
    for _, module in dropout_sites(model, active_only=False):
        module.generator = generator


def record_masks(model: nn.Module, enabled: bool = True) -> None:
    """Keep (or stop keeping) the last drawn mask of every dropout layer."""
    for _, module in dropout_sites(model, active_only=False):
        module.record = enabled
        if not enabled:
            module.last_mask = None


def recorded_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks drawn in the last training forward pass, keyed by buffer name ``<site>.mask``."""
    out = {}
    for name, module in dropout_sites(model):
        if module.last_mask is None:
            raise RuntimeError(f"dropout layer {name!r} has no recorded mask; call record_masks first")
        out[f"{name}.mask"] = module.last_mask
    return out


def set_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None) -> None:
    """Write masks (keyed ``<site>.mask``) into the dropout buffers; ``None`` clears them all."""
    for name, module in dropout_sites(model, active_only=False):
        if masks is None:
            module.mask = torch.empty(0, device=module.mask.device)
        elif f"{name}.mask" in masks:
            module.mask = masks[f"{name}.mask"]
