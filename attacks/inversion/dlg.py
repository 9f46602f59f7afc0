"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) and iDLG (Zhao et al., 2020).

DLG matches the observed update with L-BFGS on the squared L2 gradient distance, starting from
Gaussian noise, and optimizes the labels jointly with the inputs: dummy label logits, softmaxed
into soft labels, as in the authors' code (``torch.optim.LBFGS`` with its defaults: lr 1, 20
inner iterations per step, no line search). iDLG first extracts the label from the last layer's
gradient and then runs the same optimization on the inputs alone. L-BFGS keeps a curvature
history per problem, so victims are attacked one after another.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from attacks.inversion.base import ATTACKS, InversionResult
from attacks.inversion.observation import Observation
from attacks.inversion.victims import prepare, victim_seeds
from fl.core.errors import ConfigError
from fl.core.schema import above, at_least, check_bounds, setting

LINE_SEARCHES = ("none", "strong_wolfe")


@dataclass(frozen=True)
class DLGConfig:
    """DLG settings: the paper's 300 L-BFGS steps, PyTorch's L-BFGS defaults as the authors' code."""

    iters: int = setting(300, help="L-BFGS steps.", bounds=at_least(1))
    step_size: float = setting(1.0, help="L-BFGS learning rate.", cli=False, bounds=above(0))
    max_iter: int = setting(
        20, help="DLG: function evaluations per L-BFGS step (PyTorch's default).", cli=False, bounds=at_least(1)
    )
    history_size: int = setting(100, help="DLG: L-BFGS curvature pairs kept.", cli=False, bounds=at_least(1))
    line_search: str = setting(
        "none", help="DLG: L-BFGS line search, none (the authors') or strong_wolfe.", choices=LINE_SEARCHES, cli=False
    )
    seed: int = setting(0, help='Seeds the initial inputs (victim k uses derive_seed(seed, "victim", k)).')
    log_every: int = setting(10, help="Trace resolution in iterations.", cli=False, bounds=at_least(1))

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.line_search not in LINE_SEARCHES:
            raise ConfigError(f"dlg line_search {self.line_search!r} is not one of {', '.join(LINE_SEARCHES)}")


@ATTACKS.register("dlg")
class DeepLeakage:
    """L-BFGS on the L2 gradient distance over inputs and soft labels, dropout in eval mode."""

    Config = DLGConfig
    name = "dlg"
    sequential = True  # victims one after another: L-BFGS keeps one curvature history
    optimizes_labels = True  # DLG learns the labels; iDLG extracts them first

    def prepare_observation(self, obs: Observation) -> Observation:
        """DLG ignores any label the attacker knows: it learns them (placeholders keep ``prepare`` off label
        recovery)."""
        return replace(obs, labels=torch.zeros(obs.num_examples, dtype=torch.long))

    def run(
        self,
        observations: Sequence[Observation],
        config: DLGConfig,
        *,
        device: torch.device,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ) -> list[InversionResult]:
        seeds = list(seeds) if seeds is not None else victim_seeds(config.seed, len(observations))
        return [
            self._one(self.prepare_observation(o), seed, config, device, progress)
            for o, seed in zip(observations, seeds, strict=True)
        ]

    def _one(
        self, obs: Observation, seed: int, cfg: DLGConfig, device: torch.device, progress: bool
    ) -> InversionResult:
        start = time.perf_counter()
        victims = prepare([obs], [seed], device=device, distance="l2")
        matcher, params = victims.matcher, victims.params
        matcher.eager = True  # one victim, plain autograd outside (L-BFGS)
        target = {k: t[0] for k, t in victims.targets.items()}
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(obs.num_examples, *obs.in_shape, generator=gen, dtype=torch.float64)
        x = x.to(device, victims.dtype).requires_grad_(True)
        variables = [x]
        if self.optimizes_labels:
            logits = torch.randn(obs.num_examples, obs.num_classes, generator=gen, dtype=torch.float64)
            logits = logits.to(device, victims.dtype).requires_grad_(True)
            variables.append(logits)
        opt = torch.optim.LBFGS(
            variables,
            lr=cfg.step_size,
            max_iter=cfg.max_iter,
            history_size=cfg.history_size,
            line_search_fn=None if cfg.line_search == "none" else cfg.line_search,
        )

        def labels() -> torch.Tensor:
            return torch.softmax(logits, dim=-1) if self.optimizes_labels else victims.labels[0]

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = matcher.loss(params, x, labels(), {}, target)
            loss.backward()
            return loss

        trace_iter: list[int] = []
        trace_loss: list[float] = []
        bar = tqdm(range(cfg.iters), desc=self.name, disable=not progress, leave=False, dynamic_ncols=True)
        for it in bar:
            loss = float(opt.step(closure).detach())
            if it % cfg.log_every == 0 or it == cfg.iters - 1:
                trace_iter.append(it)
                trace_loss.append(loss)
                bar.set_postfix(loss=f"{loss:.4g}")
        bar.close()
        with torch.no_grad():
            final = float(matcher.loss(params, x, labels(), {}, target))
            found = labels().argmax(-1) if self.optimizes_labels else victims.labels[0]
        return InversionResult(
            attack=self.name,
            inputs=x.detach().clamp(0, 1).float().cpu(),
            labels=found.cpu(),
            label_source="optimized" if self.optimizes_labels else victims.label_source[0],
            trace={"iter": trace_iter, "loss": trace_loss},
            grad_loss=final,
            time_s=time.perf_counter() - start,
            iters=cfg.iters,
        )


@ATTACKS.register("idlg")
class ImprovedDeepLeakage(DeepLeakage):
    """iDLG: labels always extracted from the last layer's gradient, then DLG on the inputs alone."""

    name = "idlg"
    optimizes_labels = False

    def prepare_observation(self, obs: Observation) -> Observation:
        return replace(obs, labels=None)
