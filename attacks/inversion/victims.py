"""Victims grouped for one batched optimization: shared model, stacked targets and labels.

Independent victims (different clients' updates) with the same architecture and training
settings are attacked together: their candidate inputs, labels, masks and targets are
stacked along a leading victim axis and ``torch.func.vmap`` runs the per-victim objective.
Weights shared by all victims (one round) are passed once; otherwise they are stacked too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.inversion.labels import recover_labels
from attacks.inversion.matching import Matcher, Params
from attacks.inversion.observation import Observation
from attacks.inversion.readout import find_readouts, read_masks
from fl.core.errors import ConfigError
from fl.seed import derive_seed

log = logging.getLogger("fedleak.invert")


@dataclass
class Victims:
    """Everything the batched objective needs for ``len(obs)`` victims of one architecture."""

    obs: list[Observation]
    matcher: Matcher
    params: Params  # shared (stacked == False) or with a leading victim axis
    stacked: bool
    targets: Params  # leading victim axis
    labels: Tensor  # (V, n)
    label_source: list[str]
    seeds: list[int]
    device: torch.device
    dtype: torch.dtype

    def true_masks(self) -> dict[str, Tensor]:
        """The clients' real masks stacked over victims (oracle and DIA's given_sites only)."""
        if any(o.true_masks is None for o in self.obs):
            raise ConfigError(
                "the oracle attack and dia's given_sites need the client's true dropout masks (Observation.true_masks)"
            )
        keys = self.obs[0].true_masks.keys()  # type: ignore[union-attr]
        return {k: torch.stack([o.true_masks[k] for o in self.obs]).to(self.device, self.dtype) for k in keys}  # type: ignore[index]

    def read_masks(self) -> dict[str, Tensor]:
        """The masks the updates themselves reveal (see :mod:`attacks.inversion.readout`), stacked
        over victims; refuses a model where no site is readable."""
        readouts = find_readouts(self.obs[0])
        if not readouts:
            raise ConfigError(
                f"mask_readout (--mask-readout): no dropout site of model {self.obs[0].model_name!r} "
                "can be read from its update"
            )
        log.info(
            "mask readout: %d of %d dropout sites read from the update (%s); the rest are learned",
            len(readouts),
            len(self.matcher.sites),
            ", ".join(f"{r.site.removesuffix('.mask')} <- {r.param}" for r in readouts),
        )
        per = [read_masks(o, readouts) for o in self.obs]
        return {r.site: torch.stack([m[r.site] for m in per]).to(self.device, self.dtype) for r in readouts}

    def mask_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-victim mask shapes (local_steps, batch_size, *site) for every dropout site."""
        shapes: dict[str, tuple[int, ...]] = {}
        model = self.matcher.model
        sites = {name: m for name, m in model.named_modules() if f"{name}.mask" in self.matcher.sites}
        handles = [
            m.register_forward_hook(lambda mod, i, o, key=f"{name}.mask": shapes.__setitem__(key, tuple(o.shape)))
            for name, m in sites.items()
        ]
        o = self.obs[0]
        with torch.no_grad():
            model(torch.zeros(o.batch_size, *o.in_shape, device=self.device, dtype=self.dtype))
        for h in handles:
            h.remove()
        return {k: (o.local_steps, *s) for k, s in shapes.items()}


def group_key(obs: Observation) -> tuple:
    """Observations with equal keys can be attacked in one batched optimization."""
    return (
        obs.model_name,
        repr(sorted(obs.model_options.items())),
        tuple(obs.in_shape),
        obs.num_classes,
        obs.dropout,
        obs.kind,
        obs.lr,
        obs.local_steps,
        obs.batch_size,
        obs.num_examples,
    )


def group(observations: Sequence[Observation]) -> list[list[int]]:
    """Indices of the observations, grouped by :func:`group_key` (order kept within groups)."""
    groups: dict[tuple, list[int]] = {}
    for i, o in enumerate(observations):
        groups.setdefault(group_key(o), []).append(i)
    return list(groups.values())


def victim_seeds(seed: int, count: int) -> list[int]:
    """Seed of the k-th victim of a call (its initialisation does not depend on the others)."""
    return [derive_seed(seed, "victim", k) for k in range(count)]


def resolve_labels(obs: Observation) -> tuple[Tensor, str]:
    """The labels the attacker uses: the known ones, or those it recovers from the update."""
    if obs.labels is not None:
        return obs.labels.detach().long().cpu(), "known"
    return recover_labels(obs), "recovered"


def prepare(
    observations: Sequence[Observation],
    seeds: Sequence[int],
    *,
    device: torch.device,
    distance: str = "cosine",
    ghost: bool = True,
    layer_weights: str = "equal",
    bn_prior: float = 0.0,
) -> Victims:
    """Build the batched problem for observations that share a :func:`group_key`."""
    obs = list(observations)
    first = obs[0]
    dtype = next(iter(first.weights_before.values())).dtype
    dtype = dtype if dtype.is_floating_point else torch.float32
    matcher = Matcher(
        first,
        device=device,
        dtype=dtype,
        distance=distance,
        ghost=ghost,
        layer_weights=layer_weights,
        bn_prior=bn_prior,
    )
    names = matcher.param_names
    shared = all(
        all(torch.equal(o.weights_before[k].cpu(), first.weights_before[k].cpu()) for k in names) for o in obs[1:]
    )
    if shared:
        params = {k: first.weights_before[k].to(device, dtype) for k in names}
    else:
        params = {k: torch.stack([o.weights_before[k] for o in obs]).to(device, dtype) for k in names}
    per = [matcher.prepare_target(o, device, dtype) for o in obs]
    targets = {k: torch.stack([t[k] for t in per]) for k in per[0]}
    resolved = [resolve_labels(o) for o in obs]
    return Victims(
        obs=obs,
        matcher=matcher,
        params=params,
        stacked=not shared,
        targets=targets,
        labels=torch.stack([lab for lab, _ in resolved]).to(device),
        label_source=[s for _, s in resolved],
        seeds=list(seeds),
        device=device,
        dtype=dtype,
    )
