"""What an inversion will cost, before it runs: time and memory from what is being inverted.

Gradient matching differentiates the client's replayed training (Geiping et al. unroll every
local step) and then differentiates the distance again, so one attack iteration costs a few
forward and backward passes per replayed step over that step's batch, and keeps every step's
activations alive until the second backward pass. :func:`estimate` measures one such
iteration on the observed model at a small batch (the time, and the bytes autograd saves) and
scales it by the images and steps each victim replays, the victims and restarts attacked at
once, and the iterations. It is an estimate, good to a small factor (``benchmarks/
inversion_estimate.py`` compares it with measured runs); its job is to refuse the attack that
would take hours or exhaust the machine, in one line, before it starts.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch.nn import functional as F

from attacks.inversion.observation import Observation
from fl.core.errors import ConfigError
from fl.models import build_model

PROBE_BATCH = 4  # examples in the measured iteration (scaled linearly to the real batch)
GIB = 1024**3
ANNOUNCE_SECONDS = 30.0  # estimated attacks longer than this are announced before they start
log = logging.getLogger("fedleak.inversion")


class CostError(ConfigError):
    """An attack whose estimated cost exceeds the budget (exit 2: change the setting or the budget)."""


@dataclass(frozen=True)
class InversionCost:
    """The estimated cost of one batched attack: what is inverted, and what it will take."""

    attack: str
    victims: int  # observations attacked together (x restarts rows in the optimization)
    rows: int  # victims x restarts
    images: int  # dummy images in one victim's update
    steps: int  # local steps replayed per victim
    iters: int
    seconds: float  # all rounds together
    peak_bytes: int  # of one attack (rounds run one after another)
    rounds: int = 1  # attacks of this size run one after another (a federation's attacked rounds)

    def summary(self) -> str:
        """``dia: 2 victim(s) x 63 step(s) x 32 image(s), 400 iterations: about 3 h 10 min and 41.0 GiB``."""
        what = f"{self.victims} victim(s) x {self.steps} step(s) x {self.images} image(s)"
        if self.rows != self.victims:
            what += f" x {self.rows // self.victims} restarts"
        when = f" in each of {self.rounds} rounds" if self.rounds > 1 else ""
        return (
            f"{self.attack}: {what}, {self.iters} iterations{when}: about {format_seconds(self.seconds)} "
            f"and {self.peak_bytes / GIB:.1f} GiB"
        )


MINUTES_ENV, GIB_ENV = "FEDLEAK_ATTACK_MINUTES", "FEDLEAK_ATTACK_GIB"
DEFAULT_MINUTES = 60.0


@dataclass(frozen=True)
class CostBudget:
    """The most an attack may take before it is refused: wall seconds and peak bytes.

    ``peak_bytes`` None: half the machine's memory (the device's, on a GPU). Infinite values
    switch a limit off (the explicit override)."""

    seconds: float = DEFAULT_MINUTES * 60
    peak_bytes: float | None = None

    def __post_init__(self) -> None:
        if not self.seconds > 0 or (self.peak_bytes is not None and not self.peak_bytes > 0):
            raise ConfigError(f"attack budget must be positive, got {self.seconds} s and {self.peak_bytes} bytes")

    @classmethod
    def from_env(cls) -> CostBudget:
        """The budget the command line set (``fedleak --attack-budget-minutes/--attack-budget-gib``,
        carried to Flower's and Ray's processes as ``$FEDLEAK_ATTACK_MINUTES``/``$FEDLEAK_ATTACK_GIB``)."""
        minutes = _env_float(MINUTES_ENV)
        gib = _env_float(GIB_ENV)
        return cls(
            seconds=(DEFAULT_MINUTES if minutes is None else minutes) * 60,
            peak_bytes=None if gib is None else gib * GIB,
        )

    def memory(self, device: torch.device) -> float:
        return self.peak_bytes if self.peak_bytes is not None else machine_memory(device) / 2

    def check(self, cost: InversionCost, device: torch.device) -> None:
        """Raise :class:`CostError` in one line when ``cost`` exceeds the budget."""
        memory = self.memory(device)
        over = []
        if cost.seconds > self.seconds:
            over.append(f"time budget {format_seconds(self.seconds)}")
        if cost.peak_bytes > memory:
            over.append(f"memory budget {memory / GIB:.1f} GiB")
        if over:
            raise CostError(
                f"{cost.summary()}, over the {' and the '.join(over)}; attack smaller updates (fewer "
                "--client-examples or --local-steps, a smaller --batch-size), rebuild a part of each (fedleak attack "
                "--max-images), fewer iterations (--iters, --attack-iters) or victims, or "
                "raise fedleak --attack-budget-minutes / --attack-budget-gib ('inf' turns a limit off)"
            )


def admit(cost: InversionCost, budget: CostBudget, device: torch.device, *, what: str = "") -> None:
    """Refuse ``cost`` over ``budget`` (:class:`CostError`), and announce it on the ``fedleak``
    logger when it is estimated at more than :data:`ANNOUNCE_SECONDS`."""
    budget.check(cost, device)
    if cost.seconds > ANNOUNCE_SECONDS:
        log.info("%s%s", what, cost.summary())


def _env_float(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"${name} must be a number of {'minutes' if name == MINUTES_ENV else 'GiB'} or 'inf', got {text!r}"
        ) from None
    if not value > 0:
        raise ConfigError(f"${name} must be > 0 (or 'inf' for no limit), got {text!r}")
    return value


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "no limit"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def machine_memory(device: torch.device) -> int:
    """Total memory of ``device`` (the host's RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def replay_shape(obs: Observation) -> tuple[int, int]:
    """(images per replayed step, replayed steps) of one observation."""
    return min(obs.batch_size, obs.num_examples), obs.local_steps


def estimate(
    observations: Sequence[Observation],
    attack: str,
    *,
    iters: int,
    restarts: int = 1,
    device: torch.device | str = "cpu",
    masks: bool = False,
    sequential: bool = False,
) -> InversionCost:
    """Estimate one attack of ``observations`` (``masks``: DIA's learned masks too;
    ``sequential``: the victims run one after another, as L-BFGS's do, so only one is in memory).

    The iteration is measured at 1 and at ``min(batch, PROBE_BATCH)`` examples and extended
    linearly to the batch (a weight-bound model costs little per extra example, a
    convolutional one about the same per example). Time is scaled by the rows (victims x
    restarts) on the CPU; on a GPU a batched attack runs its rows in parallel, so there it is
    scaled by the rows of a sequential attack only (an underestimate once the GPU is saturated).
    The probe draws from its own random state, so estimating leaves torch's global one as it was."""
    device = torch.device(device)
    obs = max(observations, key=lambda o: math.prod(replay_shape(o)))
    batch, steps = replay_shape(obs)
    rows = len(observations) * max(restarts, 1)
    dtype = next((t.dtype for t in obs.weights_before.values() if t.is_floating_point()), torch.float32)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = build_model(
            obs.model_name, in_shape=obs.in_shape, num_classes=obs.num_classes, dropout=obs.dropout, **obs.model_options
        ).to(device=device, dtype=dtype)
        t1, m1 = measure_iteration(model, obs, 1, device)
        probe = min(batch, PROBE_BATCH)
        tb, mb = (t1, m1) if probe == 1 else measure_iteration(model, obs, probe, device)
    per_example = (max(tb - t1, 0.0) / (probe - 1), max(mb - m1, 0) / (probe - 1)) if probe > 1 else (0.0, 0)
    step_seconds = t1 + per_example[0] * (batch - 1)
    step_bytes = (m1 + per_example[1] * (batch - 1)) * (2 if masks else 1)
    params = sum(t.numel() * t.element_size() for t in obs.weights_before.values())
    # each replayed step of each row in memory keeps its activations and the weights it produces
    in_memory = 1 if sequential else rows
    peak = (step_bytes + 2 * params) * steps * in_memory + 4 * params
    timed_rows = rows if device.type == "cpu" or sequential else 1
    return InversionCost(
        attack, len(observations), rows, batch, steps, iters, step_seconds * steps * timed_rows * iters, int(peak)
    )


def measure_iteration(
    model: torch.nn.Module, obs: Observation, batch: int, device: torch.device, repeats: int = 3
) -> tuple[float, int]:
    """One matching iteration at ``batch`` examples and one step: (best of ``repeats`` seconds
    after a warm-up run, bytes autograd saved beyond the model's own weights). On the CPU it
    runs on one thread, as fedleak's attacks do by default (``--threads 1``)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _measure(model, obs, batch, device, repeats)
    finally:
        torch.set_num_threads(threads)


def _measure(
    model: torch.nn.Module, obs: Observation, batch: int, device: torch.device, repeats: int
) -> tuple[float, int]:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    weights = {p.data_ptr() for p in model.parameters()}
    target = [torch.randn_like(p) for p in params]
    gen = torch.Generator().manual_seed(0)
    dtype = next(model.parameters()).dtype
    x = torch.rand(batch, *obs.in_shape, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    y = torch.randint(0, obs.num_classes, (batch,), generator=gen).to(device)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    best = math.inf
    for k in range(repeats + 1):  # the first run warms up (allocator, kernels) and is not timed
        seen.clear()
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
            norm = cast(torch.Tensor, sum(g.pow(2).sum() for g in grads))
            loss = 1 - dot / norm.clamp_min(1e-12).sqrt()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k:
            best = min(best, time.perf_counter() - start)
    return best, sum(seen.values())
