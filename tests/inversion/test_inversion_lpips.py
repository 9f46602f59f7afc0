"""LPIPS from local weights: the distance's properties, the file checks, ``fedleak invert --lpips-*``
and ``fedleak attack --lpips-*``.

The weights are synthetic (seeded random AlexNet, non-negative random heads) but saved in the
real formats: the ``lpips`` package's ``alex.pth`` keys and torchvision's AlexNet state dict.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from attacks.inversion import metrics
from attacks.inversion.lpips import BACKBONE_KEYS, LIN_KEYS, LPIPS, load_lpips
from experiments.cli import cli
from fl.core.errors import ConfigError
from fl.data import load_dataset
from fl.federation.capture import write_partitions
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec, TrainSettings


def _weights() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = LPIPS().state_dict()
    lin = {k: state[k].abs() for k in LIN_KEYS}
    backbone = {k: state[k] for k in BACKBONE_KEYS}
    backbone["classifier.1.weight"] = torch.zeros(2, 3)  # torchvision's file also holds the classifier
    return lin, backbone


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    lin, backbone = _weights()
    torch.save(lin, tmp_path / "alex.pth")
    torch.save(backbone, tmp_path / "alexnet-owt.pth")
    return tmp_path / "alex.pth", tmp_path / "alexnet-owt.pth"


@pytest.fixture
def model(files) -> LPIPS:
    return load_lpips(*files)


def _images(n: int = 4, channels: int = 3, side: int = 32) -> torch.Tensor:
    """Smooth images with structure (random low-resolution patterns, upsampled)."""
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(n, channels, 4, 4, generator=g, dtype=torch.float64)
    return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)


def test_zero_on_identical_images_and_symmetric(model) -> None:
    x = _images()
    y = torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(model(x, x), torch.zeros(4, dtype=torch.float64))
    d = model(x, y)
    assert d.shape == (4,) and bool((d > 0).all())
    assert torch.allclose(d, model(y, x), rtol=0, atol=1e-12)


def test_grows_with_noise(model) -> None:
    x = _images()
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    d = [model(x, (x + s * noise).clamp(0, 1)).mean().item() for s in (0.01, 0.05, 0.2, 0.5)]
    assert 0 < d[0] < d[1] < d[2] < d[3]


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32), (1, 32), (3, 20)])
def test_small_and_one_channel_images(model, channels: int, side: int) -> None:
    x = _images(2, channels, side)
    d = model(x, 1 - x)
    assert d.shape == (2,) and bool(torch.isfinite(d).all()) and bool((d > 0).all())


def test_one_channel_equals_three_repeated(model) -> None:
    x, y = _images(2, 1), _images(2, 1).flip(0)
    assert torch.allclose(model(x, y), model(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)))


def test_score_adds_lpips_after_matching(model) -> None:
    x = _images()
    recon = x.flip(0)  # a permuted perfect reconstruction
    s = metrics.score(recon, x, lpips=model)
    assert s["lpips"] == [0.0] * 4
    assert "lpips" not in metrics.score(recon, x)


def test_safetensors_and_whole_lpips_state_dict(tmp_path, model) -> None:
    lin, backbone = _weights()
    save_file(lin, str(tmp_path / "lin.safetensors"))
    save_file(backbone, str(tmp_path / "alexnet.safetensors"))
    # the state dict of a whole lpips.LPIPS(net="alex") module: trunk under net.slice{k}.{i}
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    whole = dict(lin)
    for key in BACKBONE_KEYS:
        _, i, kind = key.split(".")
        whole[f"net.slice{slices[int(i)]}.{i}.{kind}"] = backbone[key]
    torch.save(whole, tmp_path / "whole.pth")
    x, y = _images(), _images().flip(0)
    want = model(x, y)
    assert torch.equal(load_lpips(tmp_path / "lin.safetensors", tmp_path / "alexnet.safetensors")(x, y), want)
    assert torch.equal(load_lpips(tmp_path / "whole.pth")(x, y), want)


class _NotATensor:
    pass


def _bad_files(tmp_path: Path, lin_ok: Path, backbone_ok: Path) -> list[tuple[list[Path | None], str]]:
    lin, backbone = _weights()
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "wrong_keys.pth")
    torch.save({**lin, "lin2.model.1.weight": torch.ones(1, 7, 1, 1)}, tmp_path / "wrong_shape.pth")
    torch.save({**lin, "lin0.model.1.weight": -lin["lin0.model.1.weight"]}, tmp_path / "negative.pth")
    torch.save({k: v for k, v in backbone.items() if k != "features.8.bias"}, tmp_path / "no_conv4_bias.pth")
    torch.save({"obj": _NotATensor()}, tmp_path / "pickle.pth")
    return [
        ([tmp_path / "missing.pth", backbone_ok], "missing.pth does not exist"),
        ([tmp_path / "garbage.pth", backbone_ok], "cannot read LPIPS weights file"),
        ([tmp_path / "pickle.pth", backbone_ok], "cannot read LPIPS weights file"),
        ([tmp_path / "wrong_keys.pth", backbone_ok], "lin0.model.1.weight .. lin4.model.1.weight"),
        ([tmp_path / "wrong_shape.pth", backbone_ok], "lin2.model.1.weight in"),
        ([tmp_path / "negative.pth", backbone_ok], "negative linear-head weights"),
        ([lin_ok, tmp_path / "no_conv4_bias.pth"], "first missing: features.8.bias"),
        ([lin_ok, tmp_path / "wrong_keys.pth"], "torchvision's AlexNet ImageNet state dict"),
        ([lin_ok, None], "--lpips-backbone"),
    ]


def test_bad_files_are_config_errors(tmp_path, files) -> None:
    for paths, needle in _bad_files(tmp_path, *files):
        with pytest.raises(ConfigError) as err:
            load_lpips(*paths)
        assert needle in str(err.value), (paths, str(err.value))
        assert "\n" not in str(err.value)


def _invert(*args: str):
    return CliRunner().invoke(
        cli,
        [
            "--device",
            "cpu",
            "-q",
            "invert",
            "--attack",
            "ig",
            "--iters",
            "2",
            "--model-option",
            "hidden=16",
            "--model-option",
            "depth=1",
            *args,
        ],
    )


@pytest.mark.parametrize("dataset", ["sample", "sample-fmnist"])
def test_cli_writes_lpips(tmp_path, files, dataset: str) -> None:
    out = tmp_path / "run"
    res = _invert(
        "--dataset",
        dataset,
        "--index",
        "0..1",
        "--lpips-weights",
        str(files[0]),
        "--lpips-backbone",
        str(files[1]),
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "LPIPS" in res.output.splitlines()[0]
    summary = json.loads((out / "metrics.json").read_text())["attacks"]["ig"]
    per = summary["per_image"]["lpips"]
    assert len(per) == 2 and all(v > 0 for v in per)
    assert summary["lpips_mean"] == pytest.approx(sum(per) / 2)


def test_cli_without_lpips_has_no_column(tmp_path) -> None:
    res = _invert("--dataset", "sample", "--out", str(tmp_path / "run"))
    assert res.exit_code == 0, res.output
    assert "LPIPS" not in res.output
    assert "lpips_mean" not in json.loads((tmp_path / "run" / "metrics.json").read_text())["attacks"]["ig"]


def test_cli_bad_files_one_line_exit_2(tmp_path, files) -> None:
    for paths, needle in _bad_files(tmp_path, *files):
        args = ["--lpips-weights", str(paths[0])] + (["--lpips-backbone", str(paths[1])] if paths[1] else [])
        res = _invert("--dataset", "sample", "--out", str(tmp_path / "r"), *args)
        assert res.exit_code == 2, (paths, res.output)
        assert needle in res.output and "Traceback" not in res.output
        [line] = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]  # click's usage-error form
        assert needle in line
    res = _invert("--dataset", "sample", "--out", str(tmp_path / "r"), "--lpips-backbone", str(files[1]))
    assert res.exit_code == 2 and "needs lpips_weights" in res.output


@pytest.fixture
def captured_run(tmp_path: Path) -> Path:
    """A one-round, two-client federation of plain SGD steps with every update captured."""
    run = tmp_path / "fed"
    data = load_dataset("sample")
    spec = ModelSpec("mlp", data.shape, data.num_classes, options={"hidden": 16, "depth": 1})
    parts = tuple(np.array_split(np.arange(len(data)), 2))
    torch.manual_seed(0)
    server = FederationServer(
        spec=ServerSpec(
            model=spec,
            num_clients=2,
            num_rounds=1,
            capture="all",
            settings=TrainSettings(local_steps=1, batch_size=2, lr=0.1),
        ),
        run_dir=run,
        initial_weights=spec.build().state_dict(),
        test_data=(data.images, data.labels),
    )
    write_partitions(run / "truth", "sample", "train", list(parts))
    server.run(
        InlineGrid(
            make_client_app(ClientSpec(model=spec, dataset="sample", partitions=parts, truth_dir=str(run / "truth"))), 2
        )
    )
    return run


def _attack(run: Path, *args: str):
    return CliRunner().invoke(
        cli,
        [
            "--device",
            "cpu",
            "attack",
            str(run),
            "--attack",
            "ig",
            "--iters",
            "2",
            "--round",
            "1",
            "--client",
            "0",
            *args,
        ],
    )


def test_attack_cli_scores_lpips_only_when_given(captured_run, files) -> None:
    stem = captured_run / "attacks" / "ig_round0001_0_cli"
    plain = _attack(captured_run)
    assert plain.exit_code == 0, plain.output
    assert "LPIPS" not in plain.output
    record = json.loads(stem.with_suffix(".json").read_text())
    assert "lpips" not in record["scores"] and "lpips_mean" not in record
    res = _attack(captured_run, "--lpips-weights", str(files[0]), "--lpips-backbone", str(files[1]))
    assert res.exit_code == 0, res.output
    record = json.loads(stem.with_suffix(".json").read_text())
    per = record["scores"]["lpips"]
    assert len(per) == len(record["scores"]["psnr"]) == 2 and all(v > 0 for v in per)
    assert record["lpips_mean"] == pytest.approx(sum(per) / 2)
    assert record["lpips_weights"] == str(files[0]) and record["lpips_backbone"] == str(files[1])
    assert f"LPIPS {record['lpips_mean']:.4f}" in res.output


def test_attack_cli_passes_balanced_layer_weights_on(captured_run) -> None:
    res = _attack(captured_run, "--layer-weights", "balanced")
    assert res.exit_code == 0, res.output
    assert "ig (balanced) on round 1, client 0: PSNR" in res.output
    record = json.loads((captured_run / "attacks" / "ig-balanced_round0001_0_cli.json").read_text())
    assert record["layer_weights"] == "balanced" and len(record["scores"]["psnr"]) == 2


def test_attack_cli_takes_attack_options_as_simulate_does(captured_run) -> None:
    res = _attack(captured_run, "--attack-option", "tv_weight=1e-6", "--attack-option", "recipe=ig")
    assert res.exit_code == 0, res.output
    record = json.loads((captured_run / "attacks" / "ig_round0001_0_cli.json").read_text())
    assert record["attack_options"] == {"tv_weight": 1e-6, "recipe": "ig"}
    for args, needle in (
        (["--attack-option", "iters=5"], "--attack-option iters=... is set by --attack-iters / --seed"),
        (["--attack-option", "mask_reg=0.1"], "mask_reg"),
        (["--attack-option", "tv_weight"], "is not KEY=VALUE"),
    ):
        res = _attack(captured_run, *args)
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output


def test_attack_cli_runs_every_attack_a_capture_supports(captured_run) -> None:
    def attack(*args: str):
        return CliRunner().invoke(
            cli,
            ["--device", "cpu", "attack", str(captured_run), "--iters", "2", "--round", "1", "--client", "0", *args],
        )

    res = attack("--attack", "dlg")
    assert res.exit_code == 0, res.output
    assert "dlg on round 1, client 0: PSNR" in res.output
    for args, needle in (
        (["--attack", "analytic"], "first layer is fully connected with a bias"),
        (
            ["--attack", "dlg", "--layer-weights", "balanced"],
            "layer_weights applies to ig, dia, oracle (--layer-weights); the chosen attack is dlg",
        ),
        (["--attack", "oracle"], "the oracle needs a model with dropout"),
    ):
        res = attack(*args)
        assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output


def test_attack_cli_bad_lpips_files_one_line_exit_2(captured_run, files, tmp_path) -> None:
    for paths, needle in _bad_files(tmp_path, *files)[:3]:
        args = ["--lpips-weights", str(paths[0])] + (["--lpips-backbone", str(paths[1])] if paths[1] else [])
        res = _attack(captured_run, *args)
        assert res.exit_code == 2, (paths, res.output)
        [line] = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
        assert needle in line and "Traceback" not in res.output
    res = _attack(captured_run, "--lpips-backbone", str(files[1]))
    assert res.exit_code == 2 and "(--lpips-backbone) needs lpips_weights (--lpips-weights)" in res.output
    assert not (captured_run / "attacks").exists()  # refused before attacking
