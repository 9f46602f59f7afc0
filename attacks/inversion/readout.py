"""Dropout masks that a single-example update gives away, read off its exact zeros.

A dropped unit contributes exactly zero to some gradients. When the client's update is the
gradient of one example (FedSGD at batch size 1), those zeros identify its mask entry by entry at two kinds of site:

* ``additive``: a parameter added to the activations before the dropout with only elementwise
  operations in between (the ViT's position embedding; a hidden bias of the MLP with
  ``bias=True``). Its gradient is ``f' * M / (1 - p) * dL/dy``, zero exactly where ``M`` is.
* ``columns``: a linear layer that consumes the dropout's output (every hidden layer of the
  MLP). Column ``j`` of its weight gradient is ``g * h_j * M_j / (1 - p)``, zero where ``M_j`` is
  (or where ``h_j`` is, and then ``M_j`` does not matter).

Which parameter exposes which site is not declared per model: the attacker draws masks on its
own copy of the architecture and keeps the (site, parameter, rule) triples whose zeros give back
the masks it drew. DIA then learns only the masks nothing reads (``--mask-readout``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError
from fl.models import dropout_sites, record_masks, recorded_masks, set_dropout_generator

Rule = Literal["additive", "columns"]
CALIBRATION_DRAWS = 2  # independent masks a readout must reproduce before it is trusted


@dataclass(frozen=True)
class Readout:
    """The dropout site ``site`` (``<name>.mask``, one example's mask of ``shape``) is read from
    the update of ``param`` by ``rule``."""

    site: str
    param: str
    rule: Rule
    shape: tuple[int, ...]


def _additive(grad: Tensor, site_shape: tuple[int, ...]) -> Tensor:
    return (grad != 0).reshape(site_shape)


def _columns(grad: Tensor, site_shape: tuple[int, ...]) -> Tensor:
    return (grad != 0).any(dim=0).reshape(site_shape)


RULES: dict[Rule, Callable[[Tensor, tuple[int, ...]], Tensor]] = {"additive": _additive, "columns": _columns}


def _fits(rule: Rule, param_shape: tuple[int, ...], site_shape: tuple[int, ...]) -> bool:
    """Whether ``rule`` can map a gradient of ``param_shape`` onto a one-example mask of ``site_shape``."""
    if rule == "additive":
        return [s for s in param_shape if s != 1] == [s for s in site_shape if s != 1]
    return len(param_shape) == 2 and site_shape == (1, param_shape[1])


def check_readable(kind: str, batch_size: int, local_steps: int) -> None:
    """Refuse updates whose zeros do not belong to one example's masks (one clear line).

    A batch sums its examples' gradients, so a zero there needs every example's mask to be
    zero. A weight delta ``-lr * g`` is added to the weights in float32 and loses small entries
    (on the ViT at lr 0.1, 5 to 14 of the 16,640 embedding-mask entries of a one-step delta read
    wrong; at lr 1e-3, 776 to 1,193; 4 CIFAR-10 images), so only gradients are read.
    """
    if kind != "gradient" or batch_size != 1:
        raise ConfigError(
            "mask_readout (--mask-readout) needs one-example gradient updates (batch_size 1, one local step), "
            f"got a {kind} of batch_size {batch_size} and local_steps {local_steps}"
        )


def find_readouts(obs: Observation, *, seed: int = 0) -> list[Readout]:
    """The readouts that hold for ``obs``'s architecture, found by drawing masks on a copy of it.

    Each candidate (site, parameter, rule) must reproduce ``CALIBRATION_DRAWS`` independently
    drawn masks exactly, wherever the site's input is non-zero. At most one readout per site.
    """
    check_readable(obs.kind, obs.batch_size, obs.local_steps)
    model = obs.build_model().double().train()
    gen = torch.Generator().manual_seed(seed)
    set_dropout_generator(model, gen)
    record_masks(model)
    sites = dict(dropout_sites(model))
    params = dict(model.named_parameters())
    inputs: dict[str, Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, key=f"{name}.mask": inputs.__setitem__(key, i[0].detach()))
        for name, m in sites.items()
    ]
    draws = []
    try:
        for _ in range(CALIBRATION_DRAWS):
            x = torch.rand(1, *obs.in_shape, generator=gen, dtype=torch.float64)
            y = torch.randint(obs.num_classes, (1,), generator=gen)
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
            draws.append((recorded_masks(model), dict(inputs), dict(zip(params, grads, strict=True))))
    finally:
        for h in hooks:
            h.remove()
    found = []
    for site in (f"{name}.mask" for name in sites):
        shape = tuple(draws[0][0][site].shape)
        for param, rule in ((p, r) for p in params for r in RULES):
            if _fits(rule, tuple(params[param].shape), shape) and all(
                _agrees(RULES[rule](g[param], shape), m[site], h[site]) for m, h, g in draws
            ):
                found.append(Readout(site, param, rule, shape))
                break
    return found


def _agrees(read: Tensor, mask: Tensor, site_input: Tensor) -> bool:
    live = site_input != 0
    return bool(torch.equal(read[live], mask[live].bool()))


def read_masks(obs: Observation, readouts: Sequence[Readout]) -> dict[str, Tensor]:
    """The client's masks at the readable sites, shaped like ``true_masks``: (1, 1, *site)."""
    check_readable(obs.kind, obs.batch_size, obs.local_steps)
    return {r.site: RULES[r.rule](obs.update[r.param].detach(), r.shape).unsqueeze(0).float() for r in readouts}
