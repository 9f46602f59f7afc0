"""DP-SGD on every client (Abadi et al., CCS 2016) with Opacus (Yousefpour et al., 2021).

Each client clips every per-sample gradient to ``max_grad_norm`` and adds Gaussian noise of
std ``noise_multiplier * max_grad_norm`` to each batch sum, with its own noise generator
(seeded from the client's private seed, fresh for every participation). Batches are Poisson
samples at rate ``1 / len(loader)``, the rate the accountant composes; an empty batch is still a
noise-only step, as in Opacus. The accountant's history lives in ``client_state``, which the
client keeps on its own side, so the reported epsilon is cumulative over every round the client
took part in, a resumed federation continues it, and the server cannot reset it.
The epsilon protects one training record of the client (example-level DP of its releases).
Models with BatchNorm are refused (per-sample gradients need sample-independent layers);
build them with ``norm="group"`` instead, nothing is rewritten silently.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, cast

import torch
from opacus import GradSampleModule, PrivacyEngine
from opacus.accountants import IAccountant
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from defenses.accounting import (
    accountant_from_history,
    epsilon_from_history,
    history_of,
    noise_for_epsilon,
)
from defenses.base import Defense, LocalTraining
from defenses.config import DefenseConfig
from defenses.registry import DEFENSES
from fl.core.errors import ConfigError, FedleakError
from fl.seed import private_generator

HISTORY_KEY = "dp_history"  # client_state key: the accountant history [[sigma, q, steps], ...]
NOISE_KEY = "dp_noise_multiplier"  # client_state key: sigma planned once from target_epsilon


def check_private_model(model: nn.Module) -> None:
    """Raise one-line ``ConfigError`` if Opacus cannot compute per-sample gradients for ``model``."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(
            f"DP-SGD cannot train {type(model).__name__}: BatchNorm mixes samples in a batch; "
            "build the model with --norm group"
        )
    was_training = model.training
    model.train()
    errors = ModuleValidator.validate(model, strict=False)
    model.train(was_training)
    if errors:
        raise ConfigError(f"DP-SGD cannot train {type(model).__name__}: {'; '.join(map(str, errors))}")


class PrivateTraining(NamedTuple):
    """What :func:`make_private` wraps: train ``model`` with ``optimizer`` on ``loader``'s batches,
    computing the loss with ``criterion`` (the one given, wrapped for ghost clipping); ``engine``
    holds the accountant (``epsilon_of(engine, delta)`` reads the budget spent so far)."""

    model: GradSampleModule
    optimizer: DPOptimizer
    loader: DataLoader
    engine: PrivacyEngine
    criterion: nn.Module | None


def make_private(
    model: nn.Module,
    optimizer: Optimizer,
    loader: DataLoader,
    *,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    delta: float = 1e-5,
    max_grad_norm: float = 1.0,
    epochs: int = 1,
    accountant: str = "rdp",
    noise_generator: torch.Generator | None = None,
    history: Sequence[Sequence[float]] = (),
    criterion: nn.Module | None = None,
    epsilon_tolerance: float | None = None,
) -> PrivateTraining:
    """Wrap a model, optimizer and loader for DP-SGD (Poisson sampling, flat per-sample clipping):
    fedleak's one place that makes an Opacus private model, optimizer and accountant.

    Give ``noise_multiplier`` or ``target_epsilon`` (then sigma is planned for ``epochs`` passes
    over ``loader`` at ``delta``, within ``epsilon_tolerance``: see :func:`noise_for_epsilon`).
    ``history`` restores an earlier accountant so epsilon keeps adding up; ``noise_generator``
    makes the noise reproducible (a private per-party generator; None: PyTorch's global one).
    Poisson batches are drawn with the loader's own generator. With a ``criterion`` the clipping
    norms come from ghost clipping (Li et al., ICLR 2022: per-sample gradient norms without
    materialising per-sample gradients, so memory does not grow with batch x parameters) and the
    returned criterion runs both of its backward passes; without one, from per-sample gradients.
    """
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError("make_private needs exactly one of noise_multiplier and target_epsilon")
    check_private_model(model)
    engine = PrivacyEngine(accountant=accountant)
    engine.accountant = accountant_from_history(history, accountant=accountant)
    if noise_multiplier is None:
        assert target_epsilon is not None  # exactly one of the two was given (checked above)
        noise_multiplier = noise_for_epsilon(
            target_epsilon=target_epsilon,
            delta=delta,
            sample_rate=1 / len(loader),
            steps=epochs * poisson_batches(len(loader)),
            accountant=accountant,
            epsilon_tolerance=epsilon_tolerance,
        )
    wrapped = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        noise_generator=noise_generator,
        **({"criterion": criterion, "grad_sample_mode": "ghost"} if criterion is not None else {}),
    )
    if criterion is not None:
        private_model, private_optimizer, criterion, private_loader = wrapped
    else:
        private_model, private_optimizer, private_loader = wrapped
    # Opacus samples each record at rate 1 / len(loader) but accounts 1 / len(Poisson loader), which is
    # larger when its int(1 / rate) steps per epoch round down (92 for 93): account the rate sampled.
    private_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=1 / len(loader)))
    return PrivateTraining(private_model, private_optimizer, private_loader, engine, criterion)


def poisson_batches(batches: int) -> int:
    """Steps per epoch of Opacus' Poisson loader made from a loader of ``batches`` batches.

    Its sampler takes ``int(1 / sample_rate)`` steps at rate ``1 / batches``, which float rounding
    makes one less than ``batches`` for some counts (e.g. 92 for 93).
    """
    return int(1 / (1 / batches))


def participation_steps(training: LocalTraining) -> int:
    """Optimizer steps one participation takes: ``local_steps``, or epochs x the Poisson loader's steps."""
    return training.local_steps or training.epochs * poisson_batches(len(cast(DataLoader, training.loader)))


def epsilon_of(source: PrivacyEngine | IAccountant, delta: float) -> float:
    """Epsilon spent so far at ``delta`` by an engine from :func:`make_private` (or its accountant)."""
    acc = source.accountant if isinstance(source, PrivacyEngine) else source
    return epsilon_from_history(acc.history, delta=delta, accountant=acc.mechanism())


class DpLocalDefense(Defense):
    """DP-SGD on every client; replies carry the client's cumulative ``epsilon``."""

    name = "dp-local"
    privacy_unit = "record"

    def __init__(
        self,
        *,
        noise_multiplier: float | None,
        target_epsilon: float | None,
        delta: float,
        max_grad_norm: float,
        accountant: str,
    ) -> None:
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.accountant = accountant
        self._engines: dict[int, PrivacyEngine] = {}  # by id of the wrapped model, until finish

    def check_model(self, model: nn.Module) -> None:
        check_private_model(model)

    def prepare_local_training(
        self, training: LocalTraining, *, client_state: MutableMapping[str, Any], seed: int
    ) -> LocalTraining:
        sigma = self._client_noise(training, client_state)
        history = client_state.get(HISTORY_KEY, [])
        if self.target_epsilon is not None:
            self._check_budget(
                history, sigma, 1 / len(cast(DataLoader, training.loader)), participation_steps(training)
            )
        model, optimizer, loader, engine, _ = make_private(
            training.model,
            training.optimizer,
            cast(DataLoader, training.loader),
            noise_multiplier=sigma,
            delta=self.delta,
            max_grad_norm=self.max_grad_norm,
            accountant=self.accountant,
            noise_generator=private_generator(seed, "dp-noise", device=next(training.model.parameters()).device),
            history=history,
        )
        self._engines[id(model)] = engine
        return replace(training, model=model, optimizer=optimizer, loader=loader)

    def finish_local_training(
        self, training: LocalTraining, *, client_state: MutableMapping[str, Any]
    ) -> dict[str, float | list[float] | list[int]]:
        engine = self._engines.pop(id(training.model), None)
        if engine is None:
            raise RuntimeError("finish_local_training got a model that prepare_local_training did not wrap")
        history = history_of(engine.accountant)
        client_state[HISTORY_KEY] = [list(h) for h in history]
        cast(GradSampleModule, training.model).cleanup()  # the client's model may be reused: drop the Opacus hooks
        return {  # the whole history, one entry per (sigma, rate): the epsilon can be recomputed from the reply
            "epsilon": epsilon_of(engine, self.delta),
            "delta": self.delta,
            "noise_multiplier": [float(sigma) for sigma, _, _ in history],
            "sample_rate": [float(rate) for _, rate, _ in history],
            "steps": [int(steps) for _, _, steps in history],
        }

    def client_epsilon(self, client_state: MutableMapping[str, Any]) -> float | None:
        history = client_state.get(HISTORY_KEY)
        return epsilon_from_history(history, delta=self.delta, accountant=self.accountant) if history else None

    def _check_budget(self, history: Sequence[Sequence[float]], sigma: float, rate: float, steps: int) -> None:
        """Refuse a participation that would take the client past its ``target_epsilon``.

        The noise was planned for the participations the server announced; a server asking for
        more (or announcing fewer) cannot make the client spend beyond its budget.
        """
        planned = [tuple(h) for h in history]
        if planned and planned[-1][:2] == (sigma, rate):  # merged as Opacus merges (and as the plan was made)
            planned[-1] = (sigma, rate, int(planned[-1][2]) + steps)
        else:
            planned.append((sigma, rate, steps))
        after = epsilon_from_history(planned, delta=self.delta, accountant=self.accountant)
        assert self.target_epsilon is not None  # only called with a target (prepare_local_training)
        if after > self.target_epsilon:
            raise FedleakError(
                f"dp-local: this round would take the client to epsilon {after:.3g} per record, past its "
                f"target {self.target_epsilon:g}; it has spent its budget and does not train"
            )

    def _client_noise(self, training: LocalTraining, client_state: MutableMapping[str, Any]) -> float:
        """Sigma for this client: given, or planned once from target_epsilon for all its rounds x steps.

        The plan counts the optimizer steps the client will take (:func:`participation_steps`: its
        ``local_steps``, or epochs x batches) at the Poisson rate its loader samples with.
        """
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        if NOISE_KEY not in client_state:
            client_state[NOISE_KEY] = noise_for_epsilon(
                target_epsilon=cast(float, self.target_epsilon),  # set when noise_multiplier is None
                delta=self.delta,
                sample_rate=1 / len(cast(DataLoader, training.loader)),
                steps=training.rounds * participation_steps(training),
                accountant=self.accountant,
            )
        return float(client_state[NOISE_KEY])


@DEFENSES.register("dp-local")
def build_dp_local(cfg: DefenseConfig) -> Defense:
    """DP-SGD with ``cfg.noise_multiplier`` or ``cfg.target_epsilon`` at ``cfg.delta``."""
    return DpLocalDefense(
        noise_multiplier=cfg.sigma if cfg.target_epsilon is None else None,
        target_epsilon=cfg.target_epsilon,
        delta=cfg.delta,
        max_grad_norm=cfg.max_grad_norm,
        accountant=cfg.accountant,
    )
