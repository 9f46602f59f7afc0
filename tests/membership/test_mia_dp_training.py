"""A DP-SGD target (or shadow) trains through defenses.dp_local.make_private, the federation's DP-SGD,
and is what Opacus' own make_private_with_epsilon trains: the same weights and the accountant's epsilon."""

from __future__ import annotations

import re

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attacks.membership.training import ModelTraining, dp_generators, make_optimizer, seeded_global_rng, train_model
from defenses import DefenseConfig
from defenses.accounting import OPACUS_TOLERANCE, epsilon_from_history, noise_for_epsilon
from defenses.dp_local import poisson_batches
from experiments.membership.config import MIAConfig
from fl.core.errors import ConfigError
from fl.models import build_model
from fl.seed import make_generator


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", in_shape=(1, 8, 8), num_classes=3, hidden=16, depth=1, dropout=0.2)


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    gen = make_generator(0)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _opacus_reference(x: torch.Tensor, y: torch.Tensor, cfg: ModelTraining, dp: DefenseConfig, seed: int):
    """Opacus' own path: make_private_with_epsilon with ghost clipping, dropout from the seeded
    global generator, the noise and the Poisson batches from their own two streams."""
    model = _model()
    noise, batches = dp_generators(seed)
    with seeded_global_rng(seed, "cpu"):
        loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True, generator=batches)
        engine = PrivacyEngine(accountant="rdp")
        module, opt, criterion, loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=make_optimizer(list(model.parameters()), cfg),
            criterion=nn.CrossEntropyLoss(),
            data_loader=loader,
            noise_generator=noise,
            target_epsilon=dp.target_epsilon,
            target_delta=dp.delta,
            epochs=cfg.epochs,
            max_grad_norm=dp.max_grad_norm,
            grad_sample_mode="ghost",
        )
        for _ in range(cfg.epochs):
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                criterion(module(xb), yb).backward()
                opt.step()
    module.remove_hooks()
    return model, engine, opt


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mia_dp_training_equals_opacus_make_private_with_epsilon(optimizer: str) -> None:
    x, y = _data()
    cfg = ModelTraining(epochs=3, batch_size=16, lr=0.05, optimizer=optimizer)
    dp = DefenseConfig(name="dp-local", target_epsilon=4.0, delta=1e-5, max_grad_norm=1.0)
    model = _model()
    history = train_model(model, x, y, cfg, seed=7, dp=dp)
    assert history is not None
    eps = epsilon_from_history(history, delta=dp.delta)
    reference, engine, opt = _opacus_reference(x, y, cfg, dp, seed=7)
    for (name, p), q in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert history == engine.accountant.history == [(opt.noise_multiplier, 1 / 6, cfg.epochs * 6)]
    assert eps == engine.get_epsilon(dp.delta)
    planned = noise_for_epsilon(
        target_epsilon=4.0, delta=1e-5, sample_rate=1 / 6, steps=18, epsilon_tolerance=OPACUS_TOLERANCE
    )
    assert opt.noise_multiplier == planned
    assert 4.0 - OPACUS_TOLERANCE <= epsilon_from_history([(planned, 1 / 6, 18)], delta=1e-5) <= 4.0


def test_mia_dp_training_accounts_every_step_at_the_rate_it_samples() -> None:
    """Where Opacus' Poisson loader takes fewer steps per epoch than batches (92 for 93), the noise is
    planned for the steps taken and the accountant composes the rate sampled (1 / 93), as a client's;
    empty batches (frequent at batch 2) are noise-only steps, accounted like the others."""
    x, y = _data(186)
    cfg = ModelTraining(epochs=2, batch_size=2, lr=0.05)
    dp = DefenseConfig(name="dp-local", target_epsilon=2.0, delta=1e-5, max_grad_norm=1.0)
    assert poisson_batches(93) == 92
    history = train_model(_model(), x, y, cfg, seed=1, dp=dp)
    sigma = noise_for_epsilon(
        target_epsilon=2.0, delta=1e-5, sample_rate=1 / 93, steps=184, epsilon_tolerance=OPACUS_TOLERANCE
    )
    assert history == [(sigma, 1 / 93, 184)]
    eps = epsilon_from_history(history, delta=1e-5)
    assert 2.0 - OPACUS_TOLERANCE <= eps <= 2.0


def test_mia_config_nests_the_defense_the_defenses_package_builds() -> None:
    """The audit's defense is a DefenseConfig: DP-SGD reads it for a central target, the federation
    for a federated one; a setting no membership defense reads, or one the chosen target cannot
    apply, is refused in one line."""
    local = DefenseConfig(name="dp-local", target_epsilon=4.0, delta=1e-6, max_grad_norm=2.0, accountant="prv")
    assert MIAConfig(defense=local).dp_config == local
    central = DefenseConfig(name="dp-central", target_epsilon=4.0, clipping_norm=2.0, clipping="adaptive")
    assert MIAConfig(defense=central, clients=2, pool_size=100).dp_config is None  # the federation applies it
    assert MIAConfig(defense=local, clients=2, pool_size=100).dp_config is None
    assert MIAConfig(defense=DefenseConfig(name="dropout", dropout=0.3)).dropout == 0.3
    for defense, message in (
        (DefenseConfig(name="prune"), "unknown defense 'prune'; valid choices: none, dropout, dp-local, dp-central"),
        (
            DefenseConfig(name="dp-local", target_epsilon=2.0, epsilon=2.0),
            "defense setting 'epsilon' does not apply to the dp-local defense, which takes noise_multiplier, "
            "target_epsilon, delta, max_grad_norm, accountant",
        ),
        (DefenseConfig(dropout=0.3), "defense setting 'dropout' does not apply to the none defense"),
        (DefenseConfig(name="dp-local", clipping="adaptive", target_epsilon=2.0), "'clipping' does not apply"),
        (DefenseConfig(name="dp-local"), "needs a privacy level: give target_epsilon (--target-epsilon) or"),
        (DefenseConfig(name="dp-central", noise_multiplier=1.0), "the dp-central defense needs a federated target"),
        (DefenseConfig(name="dropout", dropout=0.0), "the dropout defense needs dropout > 0 (--dropout)"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            MIAConfig(defense=defense)
    with pytest.raises(ConfigError, match=r"target_epsilon=inf is invalid; expected a finite value > 0"):
        DefenseConfig(name="dp-local", target_epsilon=float("inf"))


def test_mia_dp_noise_and_batches_are_independent_streams() -> None:
    """The noise must not be the sampler's stream: torch's generators seeded alike (the global one
    and the loader's) give the same draws, which tied each step's noise to the records it sampled."""
    noise, batches = dp_generators(7)
    assert not torch.equal(torch.rand(64, generator=noise), torch.rand(64, generator=batches))
    again, _ = dp_generators(7)
    assert torch.equal(torch.rand(64, generator=again), torch.rand(64, generator=dp_generators(7)[0]))
    coupled = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(torch.rand(64, generator=coupled[0]), torch.rand(64, generator=coupled[1]))


def test_mia_dp_training_takes_a_noise_multiplier_and_the_prv_accountant() -> None:
    """A dp-local defense given by its noise multiplier trains at that sigma (no planning), and the
    audit's epsilon under the PRV accountant is Opacus' PRVAccountant on the recorded steps."""
    from opacus.accountants import PRVAccountant

    x, y = _data(60)
    dp = DefenseConfig(name="dp-local", noise_multiplier=1.3, delta=1e-5, accountant="prv")
    history = train_model(_model(), x, y, ModelTraining(epochs=2, batch_size=10, lr=0.05), seed=2, dp=dp)
    assert history == [(1.3, 1 / 6, 2 * poisson_batches(6))]
    reference = PRVAccountant()
    reference.history = [(1.3, 1 / 6, 2 * poisson_batches(6))]
    eps = epsilon_from_history(history, delta=1e-5, accountant="prv")
    assert eps == reference.get_epsilon(delta=1e-5) and 0 < eps < epsilon_from_history(history, delta=1e-5)


@pytest.mark.gpu
def test_mia_dp_training_runs_on_cuda_with_a_device_noise_generator() -> None:
    """DP-SGD on CUDA draws its noise from a generator on the gradients' device (a CPU generator
    cannot feed torch.normal on CUDA) and records the same accounting as on the CPU."""
    x, y = _data(60)
    cfg = ModelTraining(epochs=1, batch_size=10, lr=0.05)
    dp = DefenseConfig(name="dp-local", noise_multiplier=1.0)
    cpu = train_model(_model(), x, y, cfg, seed=3, dp=dp)
    assert train_model(_model(), x, y, cfg, seed=3, dp=dp, device="cuda") == cpu
