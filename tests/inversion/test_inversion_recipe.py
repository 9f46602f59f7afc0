"""The DIA authors' loop (``recipe="dia"``): ReduceLROnPlateau per victim, early stopping, the
best iterate kept, the absolute mask regulariser; and the oracle with the prior of the DIA it bounds."""

from __future__ import annotations

import pytest
import torch

from attacks.inversion import attack_config, invert, invert_many
from attacks.inversion.matching import mask_regularizer
from attacks.inversion.optim import PLATEAU_PATIENCE, STOP_PATIENCE, Plateau
from fl.core.errors import ConfigError


def test_plateau_cuts_the_rate_as_torchs_scheduler_does_per_row() -> None:
    """Two rows with different objective paths: each row's rate equals what torch's
    ReduceLROnPlateau(factor=0.1, patience=800) gives on that row's objectives alone."""
    gen = torch.Generator().manual_seed(0)
    steps = 3000
    falling = 1.0 / (1 + torch.arange(steps, dtype=torch.float64))  # keeps improving
    stalled = torch.cat([falling[:100], 0.5 + 0.01 * torch.rand(steps - 100, generator=gen, dtype=torch.float64)])
    objectives = torch.stack([falling, stalled], 1)
    plateau = Plateau.start(2, torch.device("cpu"))
    ours = []
    for row in objectives:
        plateau.update(row)
        ours.append(plateau.scale.clone())
    for r in range(2):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.1)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=PLATEAU_PATIENCE)
        for t in range(steps):
            sched.step(float(objectives[t, r]))
            assert 0.1 * float(ours[t][r]) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), (r, t)
    assert float(ours[-1][0]) == 1.0 and float(ours[-1][1]) < 1.0  # only the stalled row was cut


def test_plateau_stops_a_row_as_the_authors_early_stopping_does() -> None:
    plateau = Plateau.start(3, torch.device("cpu"))
    plateau.update(torch.tensor([1.0, 1.0, 1e-6]))  # row 2 is below 1e-5: done
    for _ in range(STOP_PATIENCE - 1):
        improved = plateau.update(torch.tensor([1.0, 0.5, 1.0]))
    assert plateau.scale[0] > 0  # 3999 iterations without a lower objective: still running
    improved = plateau.update(torch.tensor([1.0, 0.5, 1.0]))
    assert plateau.scale.tolist()[0] == 0 and plateau.scale.tolist()[2] == 0
    assert plateau.scale.tolist()[1] > 0 and not improved.any()
    assert plateau.best.tolist() == pytest.approx([1.0, 0.5, 1e-6])


def test_dia_recipe_returns_the_iterate_with_the_lowest_objective(make_obs) -> None:
    """Without priors the objective is the gradient distance: the returned image's distance is the
    lowest one measured, not the last (the IG recipe returns the last)."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    obs = make_obs(x, torch.tensor([3]), dtype=torch.float64)
    res = invert(
        obs, "oracle", config=attack_config("oracle", iters=60, tv_weight=0.0, step_size=0.2, log_every=1, recipe="dia")
    )
    assert res.grad_loss == pytest.approx(min(res.trace["loss"]), rel=1e-6)
    assert res.grad_loss < res.trace["loss"][-1]  # a large constant step bounces: the last is worse
    last = invert(
        obs,
        "oracle",
        config=attack_config("oracle", iters=60, tv_weight=0.0, step_size=0.2, recipe="ig", lr_decay_at=()),
    )
    assert last.grad_loss > res.grad_loss


def test_mask_regularizer_is_the_absolute_gap_as_the_authors_code() -> None:
    masks = {"a": torch.tensor([1.0, 1.0, 0.0, 0.0]), "b": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    # drop rates 0.5 and 0.0 against p = 0.25: gaps 0.25 and -0.25
    assert float(mask_regularizer(masks, 0.25)) == pytest.approx(0.5)
    assert float(mask_regularizer(masks, 0.25, "square")) == pytest.approx(0.125)
    with pytest.raises(ConfigError, match=r"unknown mask_penalty \(--mask-penalty\) 'l3'; valid choices: abs, square"):
        attack_config("dia", mask_penalty="l3")


def test_oracle_takes_the_prior_of_the_dia_it_bounds_and_igs_loop() -> None:
    """DIA's TV weight; IG's loop, whose updates no low-loss rule stops (the authors' loop stops
    the ViT's oracle below DIA, docs/inversion.md)."""
    from experiments.inversion import inversion_config

    dia, oracle = attack_config("dia"), attack_config("oracle")
    assert oracle.tv_weight == dia.tv_weight and (oracle.recipe, dia.recipe) == ("ig", "dia")
    cfg = inversion_config(dict(attacks=("ig", "dia", "oracle")))
    assert cfg.attack_overrides("oracle").get("tv_weight") is None  # each default: DIA's 1e-5, not IG's 1e-4
    assert attack_config("ig").tv_weight == 1e-4 and oracle.tv_weight == 1e-5
    shared = inversion_config(dict(attacks=("dia", "oracle"), tv_weight=3e-5, recipe="ig"))
    assert shared.attack_overrides("oracle")["tv_weight"] == shared.attack_overrides("dia")["tv_weight"]
    assert shared.label("oracle") == "oracle" and shared.label("dia") == "dia (ig recipe)"
    assert inversion_config(dict(recipe="dia")).label("oracle") == "oracle (dia recipe)"


def test_recipe_settings_are_checked_in_one_line() -> None:
    from experiments.inversion import inversion_config

    with pytest.raises(ConfigError, match=r"lr_decay_at \(--lr-decay-at\) sets recipe ig's schedule, but dia run"):
        inversion_config(dict(attacks=("ig", "dia", "oracle"), lr_decay_at=(0.75,)))
    inversion_config(dict(attacks=("ig", "dia", "oracle"), lr_decay_at=(0.75,), recipe="ig"))
    with pytest.raises(ConfigError, match=r"unknown recipe \(--recipe\) 'adam'; valid choices: ig, dia"):
        inversion_config(dict(recipe="adam"))
    assert inversion_config(dict(mask_penalty="square")).label("dia") == "dia (squared penalty)"


def test_batched_rows_keep_their_own_schedule(make_obs) -> None:
    """Victims batched together follow the schedule each would follow alone."""
    gen = torch.Generator().manual_seed(9)
    images = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    obs = [make_obs(images[i : i + 1], torch.tensor([i]), client_seed=i, dtype=torch.float64) for i in range(2)]
    cfg = attack_config("dia", iters=15)
    batched = invert_many(obs, "dia", config=cfg, seeds=[11, 12])
    for k, o in enumerate(obs):
        alone = invert_many([o], "dia", config=cfg, seeds=[11 + k])[0]
        assert torch.allclose(alone.inputs, batched[k].inputs, atol=1e-6)
