"""BatchNorm statistics reach the observation: the server reads the client's batch statistics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from attacks.inversion import observe_client
from attacks.inversion.batchnorm import batch_input_statistics, client_batch_statistics
from experiments.cli import cli
from fl.core.errors import ConfigError
from fl.data import load_dataset
from fl.models import build_model


def _convnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=8)


def test_one_step_update_gives_the_clients_batch_statistics() -> None:
    """On the BatchNorm ConvNet: the running-statistics update of one local step gives every
    layer's batch mean and unbiased variance, equal to the batch's own (float32 running stats)."""
    data = load_dataset("sample", split="train")
    x, y = data.images[:4], data.labels[:4]
    net = _convnet()
    obs = observe_client(net, x, y, model_name="convnet", model_options={"width": 8})
    assert obs.buffer_update is not None and any(k.endswith("running_mean") for k in obs.buffer_update)
    read = client_batch_statistics(obs)
    truth = batch_input_statistics(obs.build_model(), x)
    assert set(read) == set(truth) and len(read) >= 3
    for name, s in truth.items():
        torch.testing.assert_close(read[name].mean, s.mean, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(read[name].var, s.var, atol=1e-5, rtol=1e-4)
    two = observe_client(
        net,
        data.images[:8],
        data.labels[:8],
        model_name="convnet",
        model_options={"width": 8},
        kind="delta",
        local_steps=2,
        batch_size=4,
    )
    with pytest.raises(ConfigError, match="one-step updates only"):
        client_batch_statistics(two)


def test_captured_update_carries_the_batchnorm_statistics_to_the_attacker(tmp_path, simulate_args) -> None:
    """Through a federation: the capture keeps the buffers, the observation hands them over, and
    they give the attacked client's batch statistics; the curious server's IG runs with the prior
    (and the cost estimate on a state dict whose first entries are integer counters)."""
    from experiments.federated.attacking import observation_from_capture, true_images
    from fl.federation.capture import CaptureStore

    run = tmp_path / "run"
    args = simulate_args(
        run,
        model="convnet",
        model_option="width=8",
        client_examples=4,
        batch_size=4,
        local_steps=1,
        attack="ig",
        attack_clients=1,
        attack_iters=3,
        attack_option="bn_prior=0.1",
    )
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    store = CaptureStore(run)
    obs = observation_from_capture(store.load(1, 0))
    images = true_images(store, 1, 0, load_dataset("sample", split="train").images)
    truth = batch_input_statistics(obs.build_model(), images)
    read = client_batch_statistics(obs)
    for name, s in truth.items():
        torch.testing.assert_close(read[name].mean, s.mean, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="carries no BatchNorm running statistics"):
        client_batch_statistics(dataclasses.replace(obs, buffer_update=None))


def test_bn_prior_is_zero_at_the_clients_batch_and_refused_without_batchnorm() -> None:
    """GradInversion's prior against the client's batch statistics: ~0 at the true images, large
    at noise; an attack with it runs; a model without BatchNorm or a multi-step update is refused."""
    from attacks.inversion import attack_config, invert
    from attacks.inversion.victims import prepare

    data = load_dataset("sample", split="train")
    x, y = data.images[:4], data.labels[:4]
    obs = observe_client(_convnet(), x, y, model_name="convnet", model_options={"width": 8})
    v = prepare([obs], [0], device=torch.device("cpu"), bn_prior=1.0)
    target = {k: t[0] for k, t in v.targets.items()}
    at_truth = float(v.matcher.bn_distance(v.params, x, {}, target))
    at_noise = float(v.matcher.bn_distance(v.params, torch.rand_like(x), {}, target))
    assert at_truth < 1e-3 < 1.0 < at_noise
    res = invert(obs, "ig", config=attack_config("ig", iters=5, bn_prior=0.1))
    assert res.inputs.shape == x.shape and res.grad_loss == res.grad_loss  # finite, not NaN
    torch.manual_seed(0)
    mlp = build_model("mlp", in_shape=(3, 32, 32), num_classes=10, hidden=16, depth=1)
    plain = observe_client(mlp, x[:1], y[:1], model_name="mlp", model_options={"hidden": 16, "depth": 1})
    with pytest.raises(ConfigError, match="bn_prior needs a model with BatchNorm; 'mlp' has none"):
        invert(plain, "ig", config=attack_config("ig", iters=2, bn_prior=0.1))
    with pytest.raises(ConfigError, match=r"bn_prior=-1\.0 is invalid; expected a value >= 0"):
        attack_config("ig", bn_prior=-1.0)
