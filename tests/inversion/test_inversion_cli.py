"""``fedleak invert`` as a user runs it: results on disk, resume, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from experiments.cli import cli
from experiments.inversion.config import parse_indices


def _run(*args: str):
    return CliRunner().invoke(cli, ["--device", "cpu", "-q", "invert", *args])


def test_index_ranges_parse() -> None:
    assert parse_indices("0..3,7") == (0, 1, 2, 3, 7)
    for bad in ("0..a", "3..1", "1,1", "", "-2"):
        with pytest.raises(ValueError):
            parse_indices(bad)


def test_invert_writes_metrics_grid_and_resumes(tmp_path) -> None:
    out = tmp_path / "run"
    args = [
        "--dataset",
        "sample",
        "--attack",
        "ig,dia",
        "--attack",
        "analytic",
        "--model-option",
        "bias=true",
        "--model-option",
        "hidden=32",
        "--model-option",
        "depth=1",
        "--index",
        "0..1",
        "--iters",
        "3",
        "--out",
        str(out),
    ]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    assert "| dia |" in res.output and "| analytic |" in res.output
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["attacks"]) == {"ig", "dia", "analytic"}
    assert data["attacks"]["analytic"]["psnr_mean"] == "inf" or data["attacks"]["analytic"]["psnr_mean"] > 60
    for key in ("psnr_mean", "psnr_std", "ssim_mean", "label_acc", "time_s", "iters"):
        assert key in data["attacks"]["dia"]
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "env.json").read_text())["device"] == "cpu"
    again = _run(*args)
    assert again.exit_code == 2 and "--resume" in again.output
    (out / "attacks" / "dia.json").write_text(json.dumps({**data["attacks"]["dia"], "time_s": -1.0}))
    resumed = _run(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "metrics.json").read_text())["attacks"]["dia"]["time_s"] == -1.0  # not recomputed


def test_given_sites_is_named_in_the_table_and_the_metrics(tmp_path) -> None:
    out = tmp_path / "given"
    res = _run(
        "--dataset",
        "sample",
        "--attack",
        "dia",
        "--model-option",
        "hidden=32",
        "--model-option",
        "depth=2",
        "--given-sites",
        "^3",
        "--iters",
        "3",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "| dia (given ^3) |" in res.output
    data = json.loads((out / "metrics.json").read_text())
    assert (
        data["attacks"]["dia"]["label"] == "dia (given ^3)" and data["config"]["attack_options"]["given_sites"] == "^3"
    )


def test_mask_readout_is_named_in_the_table_and_the_metrics(tmp_path) -> None:
    out = tmp_path / "readout"
    res = _run(
        "--dataset",
        "sample",
        "--attack",
        "dia",
        "--model-option",
        "hidden=32",
        "--model-option",
        "depth=2",
        "--mask-readout",
        "--given-sites",
        "^3",
        "--iters",
        "3",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "| dia (readout; given ^3) |" in res.output
    data = json.loads((out / "metrics.json").read_text())
    assert (
        data["attacks"]["dia"]["label"] == "dia (readout; given ^3)"
        and data["config"]["attack_options"]["mask_readout"] is True
    )
    settings = data["attacks"]["dia"]["attack_config"]
    assert settings["mask_readout"] is True and settings["tv_weight"] == 1e-5 and settings["iters"] == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--iters", "0"], "--iters"),
        (["--dropout", "1.0"], "dropout=1.0 is invalid; expected a value in [0, 1) (--dropout)"),
        (["--attack", "dia", "--dropout", "0"], "need a model with dropout"),
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--index", "0..x"], "not an index or a range"),
        (["--index", "0..2", "--batch-size", "2"], "batch_size 2"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--attack", "analytic", "--dropout", "0"], "fully connected with a bias"),
        (
            ["--attack", "analytic", "--model", "vit", "--index", "0..1", "--batch-size", "2"],
            "got an update of 2 examples (needs batch_size 1)",
        ),
        (["--index", "20"], "past the end of sample test (20 images)"),
        (["--lr-decay-at", "0.9,0.5"], "(--lr-decay-at) must be strictly increasing fractions"),
        (["--lr-decay-at", "half"], "'half' is not a comma list of fractions"),
        (
            ["--attack", "ig", "--given-sites", "attn"],
            "given_sites applies to dia (--given-sites); the chosen attack is ig",
        ),
        (["--attack", "dia", "--given-sites", "["], "'[' is not a regular expression"),
        (["--attack", "dia", "--mask-init", "zeros"], "'zeros' is not one of 'bernoulli', 'mean'"),
        (["--layer-weights", "layerwise"], "'layerwise' is not one of 'equal', 'balanced'"),
        (
            ["--attack", "dlg", "--layer-weights", "balanced"],
            "layer_weights applies to ig, dia, oracle (--layer-weights); the chosen attack is dlg",
        ),
        (["--attack", "ig", "--mask-readout"], "mask_readout applies to dia (--mask-readout); the chosen attack is ig"),
        (
            ["--attack", "dia", "--mask-readout", "--index", "0..1", "--batch-size", "2"],
            (
                "needs one-example gradient updates (batch_size 1, one local step), got a gradient of batch_size 2 "
                "and local_steps 1"
            ),
        ),
        (["--attack", "dia", "--mask-readout", "--local-steps", "2"], "got a delta of batch_size 1 and local_steps 2"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needle) -> None:
    res = _run("--dataset", "sample", "--iters", "2", "--out", str(tmp_path / "r"), *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_analytic_inverts_the_vit_through_the_cli(tmp_path) -> None:
    out = tmp_path / "vit"
    res = _run(
        "--dataset",
        "sample",
        "--model",
        "vit",
        "--attack",
        "analytic",
        "--index",
        "0..1",
        "--local-steps",
        "3",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "metrics.json").read_text())["attacks"]["analytic"]
    assert summary["psnr_mean"] == "inf" or summary["psnr_mean"] > 60, summary["per_image"]


def test_balanced_layer_weights_reach_the_cosine_attacks_and_their_labels(tmp_path) -> None:
    out = tmp_path / "bal"
    res = _run(
        "--dataset",
        "sample",
        "--attack",
        "ig,dia,analytic",
        "--model-option",
        "bias=true",
        "--layer-weights",
        "balanced",
        "--iters",
        "2",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "| ig (balanced) |" in res.output and "| dia (balanced) |" in res.output and "| analytic |" in res.output
    attacks = json.loads((out / "metrics.json").read_text())["attacks"]
    assert attacks["dia"]["attack_config"]["layer_weights"] == "balanced"
    assert "layer_weights" not in attacks["analytic"]["attack_config"]


def test_the_vit_gets_its_own_tv_weight_unless_one_is_given() -> None:
    from experiments.inversion import inversion_config

    assert inversion_config(dict(model="vit")).attack_overrides("ig")["tv_weight"] == 1e-5
    assert inversion_config(dict(model="vit", tv_weight=1e-3)).attack_overrides("dia")["tv_weight"] == 1e-3
    assert "tv_weight" not in inversion_config(dict(model="mlp")).attack_overrides("ig")  # IG's own 1e-4
    assert "tv_weight" not in inversion_config(dict(model="vit")).attack_overrides("dlg")  # DLG has no prior


def test_attack_settings_reach_only_the_attacks_that_have_them() -> None:
    from experiments.inversion import inversion_config
    from fl.core.errors import ConfigError

    cfg = inversion_config(dict(tv_weight=1e-5, mask_reg=1e-3, mask_step_size=0.5, mask_init="mean", iters=7))
    assert cfg.attack_overrides("dia") == {
        "iters": 7,
        "restarts": 1,
        "seed": 0,
        "tv_weight": 1e-5,
        "mask_reg": 1e-3,
        "mask_step_size": 0.5,
        "mask_init": "mean",
    }
    assert cfg.attack_overrides("ig") == {"iters": 7, "restarts": 1, "seed": 0, "tv_weight": 1e-5}
    with pytest.raises(ConfigError, match=r"mask_step_size=-1.0 is invalid; expected a value > 0 \(--mask-step-size\)"):
        inversion_config(dict(mask_step_size=-1.0))
    assert inversion_config(dict(lr_decay_at=(0.75, 0.9), recipe="ig")).attack_overrides("ig")["lr_decay_at"] == (
        0.75,
        0.9,
    )
    with pytest.raises(ConfigError, match=r"lr_decay_at .* must be strictly increasing .* got \(0.5, 1.0\)"):
        inversion_config(dict(lr_decay_at=(0.5, 1.0)))
