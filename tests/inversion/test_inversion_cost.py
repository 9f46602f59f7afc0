"""An inversion says what it will cost before it runs, and one over the budget is refused in one line."""

from __future__ import annotations

import math
import time

import pytest
import torch
from click.testing import CliRunner

from attacks.inversion import attack_config, invert_many
from attacks.inversion import cost as cost_mod
from attacks.inversion.cost import GIB, CostBudget, CostError, InversionCost, estimate
from experiments.cli import cli
from fl.core.errors import ConfigError


def _fixed_probe(monkeypatch, seconds: dict[int, float], saved: dict[int, int]) -> None:
    monkeypatch.setattr(cost_mod, "measure_iteration", lambda model, obs, batch, device: (seconds[batch], saved[batch]))


def test_estimate_scales_the_measured_iteration_by_batch_steps_rows_and_iterations(make_obs, monkeypatch) -> None:
    """Measured at 1 and 4 examples, extended linearly to the batch of 8, times 3 steps, 2 victims
    x 2 restarts and 50 iterations; memory: every step of every row keeps its activations and weights."""
    _fixed_probe(monkeypatch, {1: 0.010, 4: 0.016}, {1: 1000, 4: 1600})
    x, y = torch.rand(24, 3, 32, 32), torch.randint(0, 10, (24,))
    obs = make_obs(x, y, kind="delta", local_steps=3, batch_size=8)
    params = sum(t.numel() * t.element_size() for t in obs.weights_before.values())
    c = estimate([obs, obs], "ig", iters=50, restarts=2)
    step_s, step_b = 0.010 + 0.002 * 7, 1000 + 200 * 7
    assert (c.images, c.steps, c.rows, c.victims) == (8, 3, 4, 2)
    assert c.seconds == pytest.approx(step_s * 3 * 4 * 50)
    assert c.peak_bytes == int((step_b + 2 * params) * 3 * 4 + 4 * params)
    masked = estimate([obs, obs], "dia", iters=50, restarts=2, masks=True)
    assert masked.peak_bytes - c.peak_bytes == pytest.approx(step_b * 3 * 4, abs=1)
    one_by_one = estimate([obs, obs], "dlg", iters=50, sequential=True)  # L-BFGS: one victim in memory
    assert one_by_one.peak_bytes == int((step_b + 2 * params) * 3 + 4 * params)
    assert one_by_one.seconds == pytest.approx(step_s * 3 * 2 * 50)


def test_estimate_leaves_the_global_random_state_alone(make_obs) -> None:
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    obs = make_obs(x, y)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    estimate([obs], "ig", iters=10)
    assert torch.equal(torch.rand(3), expected)


def test_budget_refuses_in_one_line_naming_the_numbers_and_what_to_change() -> None:
    c = InversionCost(
        "dia", victims=2, rows=2, images=32, steps=63, iters=400, seconds=3 * 3600 + 600, peak_bytes=41 * GIB, rounds=1
    )
    with pytest.raises(CostError) as err:
        CostBudget(seconds=3600, peak_bytes=8 * GIB).check(c, torch.device("cpu"))
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, ConfigError)
    for part in (
        "2 victim(s) x 63 step(s) x 32 image(s)",
        "400 iterations",
        "about 3 h 10 min",
        "41.0 GiB",
        "time budget 60 min",
        "memory budget 8.0 GiB",
        "--client-examples",
        "--local-steps",
        "--batch-size",
        "--max-images",
        "--attack-budget-minutes",
    ):
        assert part in msg, (part, msg)
    CostBudget(seconds=math.inf, peak_bytes=math.inf).check(c, torch.device("cpu"))  # the override


def test_budget_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", "2.5")
    monkeypatch.setenv("FEDLEAK_ATTACK_GIB", "inf")
    b = CostBudget.from_env()
    assert b.seconds == 150 and b.peak_bytes == math.inf
    monkeypatch.delenv("FEDLEAK_ATTACK_GIB")
    assert CostBudget.from_env().memory(torch.device("cpu")) == cost_mod.machine_memory(torch.device("cpu")) / 2
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", bad)
        with pytest.raises(ConfigError, match=r"\$FEDLEAK_ATTACK_MINUTES must be"):
            CostBudget.from_env()


def test_invert_many_refuses_before_optimizing(make_obs, monkeypatch) -> None:
    """Refused on the estimate alone: the (huge) attack never starts."""
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 10, (2,))
    obs = make_obs(x, y)
    ran = []
    monkeypatch.setattr("attacks.inversion.ig.OptimizationAttack.run", lambda *a, **k: ran.append(1))
    start = time.perf_counter()
    with pytest.raises(CostError, match="over the time budget"):
        invert_many([obs], "ig", config=attack_config("ig", iters=10**7), budget=CostBudget(seconds=1.0))
    assert not ran and time.perf_counter() - start < 10


def test_cli_refuses_an_oversized_inversion_in_one_line_within_seconds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", "60")  # restored after the test (the option sets it)
    start = time.perf_counter()
    res = CliRunner().invoke(
        cli,
        [
            "--device",
            "cpu",
            "--attack-budget-minutes",
            "1",
            "invert",
            "--dataset",
            "sample",
            "--split",
            "train",
            "--attack",
            "ig",
            "--model",
            "mlp",
            "--dropout",
            "0",
            "--batch-size",
            "8",
            "--local-steps",
            "10",
            "--index",
            "0..79",
            "--iters",
            "100000",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("Error: ig: 10 victim(s) x 10 step(s) x 8 image(s), 100000 iterations: about ")
    assert "over the time budget 60 s" in line and "Traceback" not in res.output
    assert time.perf_counter() - start < 60


def test_simulate_refuses_an_oversized_curious_server_before_the_federation(
    tmp_path, monkeypatch, simulate_args
) -> None:
    monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", "1")
    out = tmp_path / "run"
    args = simulate_args(
        out, client_examples=40, batch_size=8, rounds=2, attack="ig", attack_clients=1, attack_iters=100000
    )
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "in each of 2 rounds" in res.output and "over the time budget 60 s" in res.output
    assert not (out / "capture").exists() and not (out / "checkpoint").exists()


def test_attack_rebuilds_a_part_of_a_large_update_and_says_which(tmp_path, monkeypatch, simulate_args) -> None:
    """An update of 4 local steps x batch 8 (32 images): the full replay is over a tight budget and
    refused; --max-images 4 rebuilds 4 images under the one-gradient approximation, says so before
    it starts, and scores those 4 against the true images they match."""
    import json

    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["-q", *simulate_args(run, client_examples=32, batch_size=8)])
    assert res.exit_code == 0, res.output
    args = ["--device", "cpu", "attack", str(run), "--attack", "ig", "--iters", "20000"]
    monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", "1")
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "4 step(s) x 8 image(s)" in refused.output and "--max-images" in refused.output
    monkeypatch.setenv("FEDLEAK_ATTACK_MINUTES", "inf")
    done = CliRunner().invoke(cli, [*args[:-1], "5", "--max-images", "4"])
    assert done.exit_code == 0, done.output
    assert "attacking 4 of the update's 32 images (4 local step(s) of batch 8)" in done.output
    assert "over 4 image(s)" in done.output
    record = json.loads((run / "attacks" / "ig_round0001_0_cli.json").read_text())
    assert record["max_images"] == 4 and len(record["scores"]["psnr"]) == 4 and record["part"].startswith("4 of")
    assert record["baseline_psnr"] > 0 and "baseline: 4 copies of the update's mean image" in done.output


def test_match_subset_finds_the_true_images_a_part_stands_for() -> None:
    from attacks.inversion.metrics import match_subset

    ref = torch.rand(10, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = ref[[7, 2, 5]] + 0.01
    assert match_subset(x, ref).tolist() == [7, 2, 5]
