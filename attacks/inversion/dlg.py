"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) and iDLG (Zhao et al., 2020).

DLG matches the observed update with L-BFGS on the squared L2 gradient distance, starting
from random inputs. iDLG first extracts the label from the last layer's gradient and then
runs the same optimization with it, whatever the attacker is assumed to know. L-BFGS keeps a
curvature history per problem, so victims are attacked one after another.
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


@dataclass(frozen=True)
class DLGConfig:
    """DLG settings (the paper runs 300 L-BFGS steps with learning rate 1)."""

    iters: int = 300  # L-BFGS steps (one function evaluation each, plus line search)
    step_size: float = 1.0  # L-BFGS learning rate
    history_size: int = 100  # L-BFGS curvature pairs kept
    seed: int = 0  # seeds the initial inputs (victim k uses derive_seed(seed, "victim", k))
    log_every: int = 10  # trace resolution in iterations


@ATTACKS.register("dlg")
class DeepLeakage:
    """L-BFGS on the L2 gradient distance, dropout in eval mode, labels known or recovered."""

    Config = DLGConfig
    name = "dlg"

    def prepare_observation(self, obs: Observation) -> Observation:
        return obs

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
        y = victims.labels[0]
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(obs.num_examples, *obs.in_shape, generator=gen, dtype=torch.float64)
        x = x.to(device, victims.dtype).requires_grad_(True)
        opt = torch.optim.LBFGS(
            [x], lr=cfg.step_size, max_iter=1, history_size=cfg.history_size, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = matcher.loss(params, x, y, {}, target)
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
            final = float(matcher.loss(params, x, y, {}, target))
        return InversionResult(
            attack=self.name,
            inputs=x.detach().clamp(0, 1).float().cpu(),
            labels=y.cpu(),
            label_source=victims.label_source[0],
            trace={"iter": trace_iter, "loss": trace_loss},
            grad_loss=final,
            time_s=time.perf_counter() - start,
            iters=cfg.iters,
        )


@ATTACKS.register("idlg")
class ImprovedDeepLeakage(DeepLeakage):
    """iDLG: labels always extracted from the last layer's gradient, then DLG."""

    name = "idlg"

    def prepare_observation(self, obs: Observation) -> Observation:
        return replace(obs, labels=None)
