"""BatchNorm statistics reach the observation: the server reads the client's batch statistics."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from attacks.inversion import observe_client
from attacks.inversion.batchnorm import batch_input_statistics, client_batch_statistics
from experiments.cli import cli
from fl.data import load_dataset
from fl.errors import ConfigError
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
    two = observe_client(net, data.images[:8], data.labels[:8], model_name="convnet", model_options={"width": 8},
                         kind="delta", local_steps=2, batch_size=4)
    with pytest.raises(ConfigError, match="one-step updates only"):
        client_batch_statistics(two)


def test_captured_update_carries_the_batchnorm_statistics_to_the_attacker(tmp_path) -> None:
    """Through a federation: the capture keeps the buffers, the observation hands them over, and
    they give the attacked client's batch statistics."""
    from experiments.federated.attacking import observation_from_capture, true_images
    from fl.federation.capture import CaptureStore

    run = tmp_path / "run"
    res = CliRunner().invoke(cli, [
        "--device", "cpu", "simulate", "--dataset", "sample", "--model", "convnet", "--model-option", "width=8",
        "--clients", "2", "--client-examples", "4", "--batch-size", "4", "--local-steps", "1", "--rounds", "1",
        "--capture", "all", "--engine", "inline", "--out", str(run),
    ])
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
