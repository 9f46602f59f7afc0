"""dp-local: Opacus DP-SGD on a client, cumulative accounting in client_state, per-client noise."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from defenses import DefenseConfig, LocalTraining, build_defense
from defenses.accounting import epsilon_from_history, noise_for_epsilon
from defenses.dp_local import HISTORY_KEY, NOISE_KEY, epsilon_of, make_private
from fl.core.errors import ConfigError, FedleakError
from fl.federation.local_training import train_local
from fl.federation.settings import TrainSettings
from fl.models import build_model
from fl.seed import derive_seed, make_generator


def _task(n: int = 64, shape: tuple[int, ...] = (1, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy task: the label says which half of the image is brighter."""
    gen = make_generator(0)
    x = torch.rand(n, *shape, generator=gen)
    y = (x[..., : shape[-1] // 2].mean(dim=(1, 2, 3)) > x[..., shape[-1] // 2 :].mean(dim=(1, 2, 3))).long()
    x[..., : shape[-1] // 2] += 0.5 * y.view(-1, 1, 1, 1)
    return x, y


def _training(model: nn.Module, *, seed: int, rounds: int = 1, batch_size: int = 16) -> LocalTraining:
    x, y = _task()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=make_generator(seed))
    return LocalTraining(model, torch.optim.SGD(model.parameters(), lr=0.5), loader, 1, len(y), rounds)


def _run_round(defense, training: LocalTraining, state: dict, seed: int) -> dict[str, float]:
    wrapped = defense.prepare_local_training(training, client_state=state, seed=seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(wrapped.epochs):
        for x, y in wrapped.loader:  # an empty Poisson batch is a noise-only step
            wrapped.optimizer.zero_grad(set_to_none=True)
            loss_fn(wrapped.model(x), y).backward()
            wrapped.optimizer.step()
    return defense.finish_local_training(wrapped, client_state=state)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", in_shape=(1, 8, 8), num_classes=2, hidden=32)


def _update(model: nn.Module) -> torch.Tensor:
    """The flat difference between ``model`` and the seeded initial weights of :func:`_mlp`."""
    start = _mlp()
    return torch.cat(
        [(p.detach() - s.detach()).flatten() for p, s in zip(model.parameters(), start.parameters(), strict=True)]
    )


def test_defenses_make_private_trains_a_groupnorm_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(  # a convnet in the zoo's DP-ready form (GroupNorm), small enough for 2 cores
        nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 2)
    )
    x, y = _task()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, generator=make_generator(1))
    model, optimizer, loader, engine, _ = make_private(
        model,
        torch.optim.Adam(model.parameters(), lr=0.01),
        loader,
        noise_multiplier=0.3,
        max_grad_norm=1.0,
        noise_generator=make_generator(2),
    )
    loss_fn = nn.CrossEntropyLoss()
    with torch.no_grad():
        before = float(loss_fn(model(x), y))
    for _ in range(10):
        for bx, by in loader:
            if len(by):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(bx), by).backward()
                optimizer.step()
    with torch.no_grad():
        assert float(loss_fn(model(x), y)) < 0.8 * before
    steps = sum(s for _, _, s in engine.accountant.history)
    assert 0 < steps <= 40  # Poisson loader: one step per batch slot, empty batches skipped
    assert epsilon_of(engine, 1e-5) == pytest.approx(epsilon_from_history([(0.3, 0.25, steps)], delta=1e-5))


def test_defenses_make_private_target_epsilon_plans_the_noise() -> None:
    model = _mlp()
    x, y = _task()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    _, optimizer, _, engine, _ = make_private(
        model, torch.optim.SGD(model.parameters(), lr=0.1), loader, target_epsilon=2.0, delta=1e-5, epochs=5
    )
    planned = noise_for_epsilon(target_epsilon=2.0, delta=1e-5, sample_rate=0.25, steps=20)
    assert optimizer.noise_multiplier == pytest.approx(planned)
    assert epsilon_from_history([(planned, 0.25, 20)], delta=1e-5) == pytest.approx(2.0, abs=0.05)
    assert epsilon_of(engine, 1e-5) == 0.0  # nothing spent before the first step
    with pytest.raises(ConfigError, match="exactly one of noise_multiplier and target_epsilon"):
        make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), loader)


def test_defenses_make_private_ghost_clipping_is_the_same_dp_sgd() -> None:
    """With a criterion the clipping norms come from ghost clipping: with the same batches and noise
    the model ends where per-sample clipping takes it, and the accountant records the same steps."""
    x, y = _task()
    ends, histories = [], []
    for criterion in (None, nn.CrossEntropyLoss()):
        model = _mlp()
        loader = DataLoader(TensorDataset(x, y), batch_size=16, generator=make_generator(1))
        private = make_private(
            model,
            torch.optim.SGD(model.parameters(), lr=0.5),
            loader,
            noise_multiplier=0.5,
            max_grad_norm=0.1,  # small: every per-sample gradient is clipped
            noise_generator=make_generator(2),
            criterion=criterion,
        )
        loss_fn = private.criterion or nn.CrossEntropyLoss()
        for _ in range(3):
            for bx, by in private.loader:
                if len(by):
                    private.optimizer.zero_grad(set_to_none=True)
                    loss_fn(private.model(bx), by).backward()
                    private.optimizer.step()
        assert (private.criterion is None) == (criterion is None)
        private.model.cleanup()
        ends.append(_update(model))
        histories.append(private.engine.accountant.history)
    torch.testing.assert_close(ends[1], ends[0], rtol=1e-5, atol=1e-6)
    assert histories[0] == histories[1] and histories[0][0][:2] == (0.5, 0.25)


def test_defenses_dp_local_epsilon_is_cumulative_and_restorable() -> None:
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    model, state = _mlp(), {}
    first = _run_round(defense, _training(model, seed=1), state, seed=1)
    json_state = json.loads(json.dumps(state))  # what the federation checkpoints
    second = _run_round(defense, _training(model, seed=2), state, seed=2)
    assert 0 < first["epsilon"] < second["epsilon"]
    assert first["noise_multiplier"] == [1.0] and first["delta"] == 1e-5
    # a fresh defense restored from the JSON state reports the same budget, then keeps adding
    restored = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    again = _run_round(restored, _training(_mlp(), seed=2), json_state, seed=2)
    assert again["epsilon"] == pytest.approx(second["epsilon"])
    assert epsilon_from_history(state[HISTORY_KEY], delta=1e-5) == pytest.approx(second["epsilon"])
    # the Opacus hooks are gone: the model trains normally afterwards
    assert not hasattr(next(model.parameters()), "grad_sample")


def test_defenses_dp_local_clients_get_distinct_noise_from_one_root_seed() -> None:
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=5.0, max_grad_norm=1e-6))
    # with a negligible clip the update is (almost) pure noise: it must differ between clients
    updates = []
    for client in (0, 1):
        model = _mlp()
        _run_round(defense, _training(model, seed=7), {}, seed=derive_seed(42, client))
        updates.append(_update(model))
    assert updates[0].abs().sum() > 0
    assert not torch.allclose(updates[0], updates[1])
    # and the same client and seed reproduce the same noise
    model = _mlp()
    _run_round(defense, _training(model, seed=7), {}, seed=derive_seed(42, 0))
    assert torch.allclose(_update(model), updates[0])


def test_defenses_dp_local_target_epsilon_is_planned_once_for_all_rounds() -> None:
    defense = build_defense(DefenseConfig(name="dp-local", target_epsilon=3.0))
    model, state = _mlp(), {}
    metrics = [_run_round(defense, _training(model, seed=r, rounds=3), state, seed=r) for r in range(3)]
    sigma = state[NOISE_KEY]
    assert all(m["noise_multiplier"] == [sigma] for m in metrics)
    assert metrics[0]["epsilon"] < metrics[1]["epsilon"] < metrics[2]["epsilon"] <= 3.0 + 0.05


def test_defenses_dp_local_refuses_batchnorm_in_one_line() -> None:
    defense = build_defense(DefenseConfig(name="dp-local"))
    model = build_model("convnet", in_shape=(1, 28, 28), num_classes=2, width=4, norm="batch")
    with pytest.raises(ConfigError) as err:
        defense.check_model(model)
    assert "BatchNorm" in str(err.value) and "--norm group" in str(err.value)
    assert "\n" not in str(err.value)


def _local(
    defense, settings: TrainSettings, *, rounds: int, n: int = 64, participations: int | None = None, seed: int = 0
) -> tuple[list, dict]:
    """``participations`` rounds of the federation's local training of one client; (results, client state)."""
    x, y = _task(n)
    state: dict = {}
    results = []
    for turn in range(participations or rounds):
        model = _mlp()
        results.append(
            train_local(
                model,
                x,
                y,
                torch.arange(n),
                settings,
                seed=seed + turn,
                defense=defense,
                client_state=state,
                rounds=rounds,
            )
        )
    return results, state


@pytest.mark.parametrize(
    "settings",
    [
        TrainSettings(local_steps=1, batch_size=16),
        TrainSettings(local_steps=20, batch_size=16),
        TrainSettings(local_epochs=2, batch_size=16),
    ],
    ids=["1-step", "20-steps", "2-epochs"],
)
def test_defenses_dp_local_target_epsilon_holds_whatever_the_step_settings(settings: TrainSettings) -> None:
    """The noise is planned for the steps the client takes (local_steps, or epochs x batches) over its rounds."""
    defense = build_defense(DefenseConfig(name="dp-local", target_epsilon=4.0))
    results, state = _local(defense, settings, rounds=3)
    final = results[-1].metrics["epsilon"]
    assert 4.0 * 0.99 <= final <= 4.0
    steps_per_round = settings.local_steps or settings.local_epochs * 4
    assert [r.steps for r in results] == [steps_per_round] * 3
    assert sum(s for _, _, s in state[HISTORY_KEY]) == 3 * steps_per_round


def test_defenses_dp_local_empty_poisson_batch_is_a_noise_only_step_and_is_accounted() -> None:
    """Three records at rate 1/3: about 30 % of the batches are empty; each is still one accounted step."""
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    results, state = _local(defense, TrainSettings(local_epochs=1, batch_size=1), rounds=10, n=3)
    assert [r.steps for r in results] == [3] * 10  # one step per Poisson batch slot, empty or not
    ((sigma, rate, steps),) = state[HISTORY_KEY]
    assert (sigma, rate, steps) == (1.0, pytest.approx(1 / 3), 30)
    assert any(len(r.indices) < 3 for r in results)  # some rounds did draw empty or short batches


def test_defenses_dp_local_fedprox_term_reaches_the_update_after_the_noise() -> None:
    """Second SGD step: w2(mu) - w2(0) = -lr mu (w1 - w0), with the same batches and noise."""
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    lr, mu = 0.1, 1000.0
    x, y = _task()
    weights = {}
    for m in (0.0, mu):
        settings = TrainSettings(local_steps=2, batch_size=16, lr=lr, proximal_mu=m)
        model = _mlp()
        train_local(model, x, y, torch.arange(len(y)), settings, seed=11, defense=defense, client_state={})
        weights[m] = [p.detach().clone() for p in model.parameters()]
    one_step = _mlp()
    train_local(
        one_step,
        x,
        y,
        torch.arange(len(y)),
        TrainSettings(local_steps=1, batch_size=16, lr=lr),
        seed=11,
        defense=defense,
        client_state={},
    )
    start = _mlp()
    assert not all(torch.equal(a, b) for a, b in zip(weights[0.0], weights[mu], strict=True))
    for w0, w1, a, b in zip(start.parameters(), one_step.parameters(), weights[0.0], weights[mu], strict=True):
        torch.testing.assert_close(b - a, -lr * mu * (w1.detach() - w0.detach()), rtol=1e-4, atol=1e-5)


def test_defenses_dp_local_client_refuses_to_train_past_its_target_epsilon() -> None:
    """Planned for 2 participations; a third (a server asking for more than it announced) is refused."""
    defense = build_defense(DefenseConfig(name="dp-local", target_epsilon=2.0))
    settings = TrainSettings(local_steps=3, batch_size=16)
    results, state = _local(defense, settings, rounds=2)
    assert results[-1].metrics["epsilon"] <= 2.0
    with pytest.raises(FedleakError, match=r"past its target 2; it has spent its budget and does not train"):
        train_local(_mlp(), *_task(), torch.arange(64), settings, seed=9, defense=defense, client_state=state, rounds=2)
    assert sum(s for _, _, s in state[HISTORY_KEY]) == 2 * 3  # nothing more was spent


@pytest.mark.parametrize(
    ("target", "n", "settings"),
    [
        (0.5, 64, TrainSettings(local_steps=5, batch_size=16)),
        (4.0, 93, TrainSettings(local_epochs=1, batch_size=1)),  # 93 batches: Opacus' sampler takes 92 steps
    ],
)
def test_defenses_dp_local_target_epsilon_within_one_percent_for_small_targets_and_odd_loaders(target, n, settings):
    defense = build_defense(DefenseConfig(name="dp-local", target_epsilon=target))
    results, state = _local(defense, settings, rounds=2, n=n)
    assert target * 0.99 <= results[-1].metrics["epsilon"] <= target
    steps = settings.local_steps or 92
    assert [r.steps for r in results] == [steps] * 2 and state[HISTORY_KEY][0][2] == 2 * steps
    assert state[HISTORY_KEY][0][1] == 1 / (n // settings.batch_size)  # the rate the sampler includes a record at
