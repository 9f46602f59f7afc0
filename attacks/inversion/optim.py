"""The optimization loop shared by Inverting Gradients, DIA and the oracle-mask bound.

Inverting Gradients (Geiping et al., NeurIPS 2020): Adam on the sign of the image gradient,
learning rate decayed by 0.1 at 3/8, 5/8 and 7/8 of the iterations (``lr_decay_at``), images
clamped to the data box [0, 1] after every step, several restarts of which the one with the
lowest final gradient distance is kept. DIA (Scheliga et al., AAAI 2023) adds one real-valued mask per
dropout site per sample, initialised from Bernoulli(1 - p), clamped to [0, 1] and pulled
towards the dropout rate by ``mask_reg``. All victims and restarts run as one batch through
``torch.func.vmap``; a lone victim with one restart runs on plain autograd instead
(``Matcher.eager``), which computes the same objective with less dispatch overhead.

Two recipes drive the loop (``recipe``). ``ig`` is Inverting Gradients' (Geiping et al.'s code):
learning rates cut 10x at fixed fractions of the iterations, the last iterate returned, the
restart with the lowest final gradient distance kept. ``dia`` is the DIA authors' code: both
learning rates cut 10x when the objective has not improved for 800 iterations
(``ReduceLROnPlateau``), a run stops after 4000 iterations without a lower objective or once it
is below 1e-5, and the iterate with the lowest objective is returned (and decides between
restarts). Each victim and restart keeps its own schedule, as if it ran alone. fedleak keeps
the iterate at which the lowest objective was measured; the authors' loop stores the iterate
one step after it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import torch
from torch import Tensor
from torch.func import grad_and_value, vmap
from tqdm.auto import tqdm

from attacks.inversion.base import InversionResult
from attacks.inversion.matching import (
    MASK_PENALTIES,
    eager_grad_and_value,
    mask_regularizer,
    total_variation,
)
from attacks.inversion.victims import Victims
from fl.core.errors import ConfigError

MaskMode = Literal["eval", "learn", "given"]
MASK_INITS = ("bernoulli", "mean")  # DIA's masks start as Bernoulli(1 - p) draws, or all at 1 - p
IG_LR_DECAY_AT = (3 / 8, 5 / 8, 7 / 8)  # Inverting Gradients' schedule, as fractions of the iterations
RECIPES = ("ig", "dia")  # the loop of Geiping et al.'s code, or of Scheliga et al.'s
RECIPE_STEP_SIZE = {"ig": 0.1, "dia": 0.025}
"""Image learning rate per recipe. Both codes take 0.1 on inputs normalised by the data's mean and
std; fedleak's models take [0, 1] pixels. The DIA recipe keeps the authors' step in pixels (0.1
x CIFAR-10's std, about 0.25); the IG recipe keeps fedleak's 0.1 from before, with which its
tables were measured (docs/inversion.md)."""
PLATEAU_PATIENCE = 800  # DIA authors' ReduceLROnPlateau(factor=0.1, patience=800)
PLATEAU_THRESHOLD = 1e-4  # torch's ReduceLROnPlateau default (relative)
STOP_PATIENCE = 4000  # DIA authors' early stopping: no lower objective in 4000 iterations
STOP_LOSS = 1e-5  # DIA authors' loop ends once the objective is below this


def check_recipe(name: str) -> None:
    """Refuse an unknown loop recipe (one line naming the choices)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe (--recipe) {name!r}; valid choices: {', '.join(RECIPES)}")


def check_mask_penalty(name: str) -> None:
    """Refuse an unknown mask penalty (one line naming the choices)."""
    if name not in MASK_PENALTIES:
        raise ConfigError(f"unknown mask_penalty (--mask-penalty) {name!r}; valid choices: {', '.join(MASK_PENALTIES)}")


def parse_lr_decay_at(text: str) -> tuple[float, ...]:
    """``"0.75,0.9"`` to ``(0.75, 0.9)``; ``"none"`` to ``()`` (constant rates)."""
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r} is not a comma list of fractions like 0.75,0.9 (or 'none')") from None


def check_lr_decay_at(fractions: tuple[float, ...]) -> None:
    """Refuse a schedule that is not strictly increasing fractions in (0, 1)."""
    if any(not 0.0 < f < 1.0 for f in fractions) or any(a >= b for a, b in pairwise(fractions)):
        raise ConfigError(
            "lr_decay_at (--lr-decay-at) must be strictly increasing fractions of the iterations in (0, 1), "
            f"got {fractions}"
        )


def check_mask_init(name: str) -> None:
    """Refuse an unknown mask initialisation (one line naming the choices)."""
    if name not in MASK_INITS:
        raise ConfigError(f"unknown mask_init (--mask-init) {name!r}; valid choices: {', '.join(MASK_INITS)}")


def check_given_sites(pattern: str | None) -> None:
    """Refuse a ``given_sites`` pattern that is not a regular expression."""
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"given_sites (--given-sites) {pattern!r} is not a regular expression: {exc}") from None


def decay_milestones(iters: int, fractions: tuple[float, ...]) -> list[int]:
    """Iterations after which the learning rates drop 10x (``MultiStepLR`` milestones)."""
    return [int(iters * f) for f in fractions]


@dataclass(frozen=True)
class LoopSettings:
    """The numbers one optimization run needs (taken from an attack's config)."""

    iters: int
    step_size: float
    restarts: int
    tv_weight: float
    mask_reg: float = 0.0
    mask_step_size: float = 0.1
    mask_signed: bool = False
    mask_init: str = "bernoulli"  # one of MASK_INITS
    lr_decay_at: tuple[float, ...] = IG_LR_DECAY_AT  # recipe "ig" only
    given_sites: str | None = None  # regex: dropout sites whose true masks a "learn" run is handed
    mask_readout: bool = False  # a "learn" run reads the masks the update reveals instead of learning them
    recipe: str = "ig"  # one of RECIPES
    mask_penalty: str = "abs"  # one of MASK_PENALTIES
    log_every: int = 10


@dataclass
class Plateau:
    """Per-row ``ReduceLROnPlateau(mode="min", factor=0.1)`` and the DIA authors' early stopping
    and best-iterate tracking, for ``rows`` optimizations that share one Adam."""

    scale: Tensor  # (rows,) learning-rate multiplier; 0 once a row has stopped
    sched_best: Tensor  # the scheduler's best objective (relative threshold)
    bad: Tensor  # iterations since the scheduler's best
    best: Tensor  # lowest objective so far (the early stopper's, delta 0)
    since: Tensor  # iterations since ``best``

    @classmethod
    def start(cls, rows: int, device: torch.device) -> Plateau:
        inf = torch.full((rows,), torch.inf, dtype=torch.float64, device=device)
        zeros = torch.zeros(rows, dtype=torch.long, device=device)
        return cls(torch.ones(rows, dtype=torch.float64, device=device), inf, zeros, inf.clone(), zeros.clone())

    def update(self, objective: Tensor) -> Tensor:
        """Record one objective per row (measured before the step); returns the rows that improved."""
        obj = objective.detach().double()
        running = self.scale > 0
        better = running & (obj < self.sched_best * (1 - PLATEAU_THRESHOLD))
        self.sched_best = torch.where(better, obj, self.sched_best)
        self.bad = torch.where(better, 0, self.bad + 1)
        cut = running & (self.bad > PLATEAU_PATIENCE)
        self.scale = torch.where(cut, self.scale * 0.1, self.scale)
        self.bad = torch.where(cut, 0, self.bad)
        improved = running & (obj < self.best)
        self.best = torch.where(improved, obj, self.best)
        self.since = torch.where(improved, 0, self.since + 1)
        stop = running & ((self.since >= STOP_PATIENCE) | (self.best < STOP_LOSS))
        self.scale = torch.where(stop, torch.zeros_like(self.scale), self.scale)
        return improved


def adam_inversion(
    victims: Victims, s: LoopSettings, *, masks: MaskMode, attack: str, progress: bool = False
) -> list[InversionResult]:
    """Run the signed-Adam inversion for every victim (and restart) at once."""
    start = time.perf_counter()
    o = victims.obs[0]
    v, r = len(victims.obs), s.restarts
    learned_shapes, given = _mask_split(victims, masks, s.given_sites, s.mask_readout)
    x, m = _initial(victims, r, learned_shapes, s.mask_init)
    fixed = _expand(given, r)
    labels, targets = _expand_one(victims.labels, r), _expand(victims.targets, r)
    params_dim = 0 if victims.stacked else None
    params = _expand(victims.params, r) if victims.stacked else victims.params
    matcher, p = victims.matcher, o.dropout
    matcher.eager = v * r == 1

    def objective(x, learned, y, target, params, given):
        match = matcher.loss(params, x, y, {**learned, **given}, target)
        total = match + s.tv_weight * total_variation(x)
        if learned:
            total = total + s.mask_reg * mask_regularizer(learned, p, s.mask_penalty)
        return total, match

    in_dims = (0, 0, 0, 0, params_dim, 0)
    if matcher.eager:
        step = _one_victim(eager_grad_and_value(objective, argnums=(0, 1), has_aux=True, create_graph=False), in_dims)
        evaluate = _one_victim(lambda *a: objective(*a)[1], in_dims)
    else:
        step = vmap(grad_and_value(objective, argnums=(0, 1), has_aux=True), in_dims=in_dims)
        evaluate = vmap(lambda *a: objective(*a)[1], in_dims=in_dims)
    opt, sched = make_optimizer(x, m, s)
    plateau = Plateau.start(v * r, x.device) if s.recipe == "dia" else None
    kept_x, kept_m = x.detach().clone(), {k: t.detach().clone() for k, t in m.items()}
    trace_iter: list[int] = []
    trace_loss: list[Tensor] = []
    bar = tqdm(range(s.iters), desc=attack, disable=not progress, leave=False, dynamic_ncols=True)
    for it in bar:
        (gx, gm), (total, match) = step(x, m, labels, targets, params, fixed)
        x.grad = gx.sign()
        for k, g in gm.items():
            m[k].grad = g.sign() if s.mask_signed else g
        if plateau is None:
            opt.step()
            sched.step()
        else:
            with torch.no_grad():
                improved = plateau.update(total)
                _keep(kept_x, x, improved)
                for k, t in m.items():
                    _keep(kept_m[k], t, improved)
            _scaled_step(opt, [x, *m.values()], plateau.scale)
        with torch.no_grad():
            x.clamp_(0, 1)
            for t in m.values():
                t.clamp_(0, 1)
        if it % s.log_every == 0 or it == s.iters - 1:
            trace_iter.append(it)
            trace_loss.append(match.detach())
            bar.set_postfix(loss=f"{float(match.mean()):.4g}")
        if plateau is not None and not bool((plateau.scale > 0).any()):
            break  # every victim has stopped
    bar.close()
    if plateau is not None:  # the iterate with the lowest objective, not the last
        with torch.no_grad():
            x.copy_(kept_x)
            for k, t in m.items():
                t.copy_(kept_m[k])
    with torch.no_grad():
        final = evaluate(x, m, labels, targets, params, fixed)
    elapsed = time.perf_counter() - start
    chosen = plateau.best.to(final.dtype) if plateau is not None else final  # what decides between restarts
    best = chosen.reshape(r, v).argmin(0)  # kept restart per victim
    losses = torch.stack(trace_loss).reshape(len(trace_iter), r, v) if trace_loss else None
    results = []
    for k in range(v):
        j = int(best[k]) * v + k
        results.append(
            InversionResult(
                attack=attack,
                inputs=x[j].detach().float().cpu(),
                labels=victims.labels[k].cpu(),
                label_source=victims.label_source[k],
                trace={"iter": trace_iter, "loss": losses[:, best[k], k].tolist() if losses is not None else []},
                grad_loss=float(final[j]),
                time_s=elapsed / v,
                iters=it + 1,
                masks={key: t[j].detach().float().cpu() for key, t in m.items()} if m else None,
            )
        )
    return results


def make_optimizer(
    x: Tensor, masks: dict[str, Tensor], s: LoopSettings
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam over the images (``step_size``) and the masks (``mask_step_size``), both decayed 10x
    at the ``lr_decay_at`` fractions of the iterations."""
    groups = [{"params": [x], "lr": s.step_size}]
    if masks:
        groups.append({"params": list(masks.values()), "lr": s.mask_step_size})
    opt = torch.optim.Adam(groups)
    return opt, torch.optim.lr_scheduler.MultiStepLR(
        opt, milestones=decay_milestones(s.iters, s.lr_decay_at), gamma=0.1
    )


def _keep(store: Tensor, current: Tensor, rows: Tensor) -> None:
    """Copy the rows of ``current`` flagged in ``rows`` into ``store``."""
    store.copy_(torch.where(rows.view(-1, *([1] * (current.dim() - 1))), current.detach(), store))


def _scaled_step(opt: torch.optim.Optimizer, tensors: list[Tensor], scale: Tensor) -> None:
    """One Adam step with each row's learning rate multiplied by ``scale`` (0 freezes a row).

    Adam's moments do not depend on the learning rate, so the step of a row with rate
    ``lr * scale`` is ``scale`` times the step at ``lr``."""
    before = [t.detach().clone() for t in tensors]
    opt.step()
    with torch.no_grad():
        for t, b in zip(tensors, before, strict=True):
            f = scale.to(t.dtype).view(-1, *([1] * (t.dim() - 1)))
            t.copy_(b + (t - b) * f)


def _one_victim(fn: Callable, in_dims: tuple[int | None, ...]) -> Callable:
    """What ``vmap(fn, in_dims)`` computes for a batch of one, without vmap (plain autograd)."""

    def call(*args: Any) -> Any:
        first = (a if d is None else _map(lambda t: t[0], a) for a, d in zip(args, in_dims, strict=True))
        return _map(lambda t: t.detach().unsqueeze(0), fn(*first))

    return call


def _map(f: Callable[[Tensor], Tensor], tree: Any) -> Any:
    """Apply ``f`` to every tensor in nested tuples and dicts."""
    if isinstance(tree, Tensor):
        return f(tree)
    if isinstance(tree, dict):
        return {k: _map(f, v) for k, v in tree.items()}
    return tuple(_map(f, v) for v in tree)


def _mask_split(
    victims: Victims, masks: MaskMode, given_sites: str | None, readout: bool = False
) -> tuple[dict[str, tuple[int, ...]], dict[str, Tensor]]:
    """Shapes of the masks to learn, and the masks handed over (stacked over victims).

    ``eval``: neither. ``given``: every true mask (the oracle). ``learn``: all learned, except
    the sites the updates reveal (``readout``) and the sites matching ``given_sites``, whose true
    masks are handed over (a partial oracle: which sites' masks protect the data).
    """
    if masks == "eval":
        return {}, {}
    if masks == "given":
        return {}, victims.true_masks()
    shapes = victims.mask_shapes()
    fixed = victims.read_masks() if readout else {}
    if given_sites is not None:
        given = {k for k in shapes if re.search(given_sites, k)}
        if not given:
            sites = ", ".join(k.removesuffix(".mask") for k in shapes)
            raise ConfigError(f"given_sites {given_sites!r} matches no dropout site; the sites are: {sites}")
        true = victims.true_masks()
        fixed.update({k: true[k] for k in given})
    return {k: v for k, v in shapes.items() if k not in fixed}, fixed


def _initial(
    victims: Victims, restarts: int, shapes: dict[str, tuple[int, ...]], mask_init: str = "bernoulli"
) -> tuple[Tensor, dict[str, Tensor]]:
    """Uniform images and masks of ``shapes`` (Bernoulli(1 - p) draws, or 1 - p everywhere with
    ``mask_init="mean"``), drawn per victim from its own seed."""
    o = victims.obs[0]
    xs: list[Tensor] = []
    ms: dict[str, list[Tensor]] = {k: [] for k in shapes}
    gens = [torch.Generator().manual_seed(seed) for seed in victims.seeds]
    for _ in range(restarts):
        for gen in gens:
            xs.append(torch.rand(o.num_examples, *o.in_shape, generator=gen, dtype=torch.float64))
            for k, shape in shapes.items():
                keep = torch.full(shape, 1.0 - o.dropout, dtype=torch.float64)
                ms[k].append(torch.bernoulli(keep, generator=gen) if mask_init == "bernoulli" else keep)
    cast: dict[str, Any] = {"device": victims.device, "dtype": victims.dtype}
    x = torch.stack(xs).to(**cast)
    return x, {k: torch.stack(v).to(**cast) for k, v in ms.items()}


def _expand_one(t: Tensor, restarts: int) -> Tensor:
    return t.repeat(restarts, *([1] * (t.dim() - 1))) if restarts > 1 else t


def _expand(tensors: dict[str, Tensor], restarts: int) -> dict[str, Tensor]:
    return {k: _expand_one(t, restarts) for k, t in tensors.items()}
