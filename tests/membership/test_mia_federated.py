"""Server-side membership inference on a client update built here (no Ray): one local epoch of a
model copy on the client's records, the delta captured with the federation's CaptureWriter."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from attacks.membership.federated import FEDERATED_ATTACKS, gradient_stats, per_sample_stats
from attacks.membership.federated_runner import FederatedMIAConfig, run_federated_mia
from attacks.membership.metrics import point_metrics
from experiments.cli import cli
from fl.errors import ConfigError

SPEC = {
    "name": "mlp",
    "in_shape": (1, 28, 28),
    "num_classes": 10,
    "options": {"hidden": 64, "depth": 1, "bias": True},
}
LR, BATCH = 0.1, 32


def _local_update(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One local epoch of minibatch SGD on a copy; returns new weights - old weights."""
    local = copy.deepcopy(model).train()
    opt = torch.optim.SGD(local.parameters(), lr=LR)
    for i in range(0, len(x), BATCH):
        opt.zero_grad()
        F.cross_entropy(local(x[i : i + BATCH]), y[i : i + BATCH]).backward()
        opt.step()
    before = model.state_dict()
    return {k: v - before[k] for k, v in local.state_dict().items()}


@pytest.fixture(scope="module")
def capture(data_root, tmp_path_factory):
    """A captured round 1 with four clients of 32 MNIST test records each (the rest unassigned);
    each client takes one full-batch SGD step."""
    from fl.data import load_dataset
    from fl.federation.capture import CaptureWriter
    from fl.federation.settings import ModelSpec, TrainSettings

    data = load_dataset("mnist", split="test", root=data_root)
    spec = ModelSpec(**SPEC)
    torch.manual_seed(0)
    model = spec.build()
    # the global model of a later round: briefly trained on records no client holds
    warm = _local_update(model, data.images[5000:6000], data.labels[5000:6000])
    model.load_state_dict({k: v + warm[k] for k, v in model.state_dict().items()})
    run = tmp_path_factory.mktemp("fed")
    writer = CaptureWriter(run, spec)
    settings = TrainSettings(local_epochs=1, batch_size=BATCH, lr=LR)
    parts = [np.arange(32 * i, 32 * (i + 1)) for i in range(4)]
    writer.write_partitions("mnist", "test", parts)
    writer.write_global(1, model.state_dict(), {"config": settings.to_config()})
    for client, idx in enumerate(parts):
        delta = _local_update(model, data.images[idx], data.labels[idx])
        writer.write_update(1, client, delta, {"num_examples": len(idx)})
        writer.write_truth(1, client, idx.tolist())
    return run, model, data, parts


def test_mia_gradient_scores_detect_the_clients_records(capture) -> None:
    from fl.federation.capture import CaptureStore

    run, model, data, parts = capture
    store = CaptureStore(run)
    updates = [store.load(1, c).update for c in range(4)]
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in FEDERATED_ATTACKS.names()}
    for c, idx in enumerate(parts):
        cand = np.r_[idx, np.arange(2000 + 32 * c, 2032 + 32 * c)]  # 32 members, 32 unseen records
        refs = [u for i, u in enumerate(updates) if i != c]
        stats = gradient_stats(
            model, store.load(1, c).weights_before, updates[c], data.images[cand], data.labels[cand],
            step_weight=LR / BATCH, references=refs,
        )  # fmt: skip
        for name, fn in FEDERATED_ATTACKS.items():
            pooled[name].append(fn(stats))
    members = np.tile(np.r_[np.ones(32, bool), np.zeros(32, bool)], 4)
    aucs = {name: point_metrics(np.concatenate(v), members)["auc"] for name, v in pooled.items()}
    for name in ("grad-cosine", "grad-diff", "fedmia"):
        assert aucs[name] > 0.62, aucs
    assert aucs["grad-norm"] > 0.55, aucs


def test_mia_per_sample_gradients_match_autograd(capture) -> None:
    _, model, data, _ = capture
    x, y = data.images[:5], data.labels[:5]
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    norms, dots = per_sample_stats(model, dict(model.named_parameters()), x, y, [direction])
    for i in range(5):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        flat = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
        d = torch.cat([direction[n].flatten() for n, _ in model.named_parameters()]).double()
        assert norms[i].item() == pytest.approx(flat.norm().item(), rel=1e-4)
        assert dots[i, 0].item() == pytest.approx((flat @ d).item(), rel=1e-4, abs=1e-6)


def test_mia_federated_audit_and_client_attribution(capture, data_root, tmp_path) -> None:
    run, *_ = capture
    cfg = FederatedMIAConfig(candidates=100, bootstrap=20)
    res = run_federated_mia(run, cfg, device="cpu", data_root=data_root, out_dir=tmp_path)
    assert res["server_round"] == 1 and res["clients"] == [0, 1, 2, 3]
    # non-members here include other clients' records: the client-level question
    assert res["attacks"]["fedmia"]["auc"] > 0.62, res["attacks"]["fedmia"]["auc"]
    assert res["attacks"]["grad-cosine"]["auc"] > 0.62
    assert (
        res["attribution"]["accuracy"] > 1.5 * res["attribution"]["chance"]
    )  # 128 records: > 3 s.e.
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["attacks"]["grad-diff"]["n_members"]
        == 128
    )
    assert (tmp_path / "roc.png").is_file()


def test_mia_federated_cli(capture, data_root, tmp_path) -> None:
    run, *_ = capture
    args = [
        "--device",
        "cpu",
        "mia",
        "--federated",
        str(run),
        "--attack",
        "grad-cosine",
        "--round",
        "1",
    ]
    ok = CliRunner().invoke(
        cli,
        [
            *args,
            "--candidates",
            "50",
            "--bootstrap",
            "0",
            "--data-dir",
            str(data_root),
            "--out",
            str(tmp_path),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "grad-cosine" in ok.output and "client attribution" in ok.output
    bad_round = CliRunner().invoke(cli, [*args[:-1], "7", "--data-dir", str(data_root)])
    assert (
        bad_round.exit_code == 2
        and "round 7 was not captured; captured rounds: 1" in bad_round.output
    )
    assert "Traceback" not in bad_round.output


def test_mia_federated_rejects_bad_input(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown federated membership attack 'nope'"):
        FederatedMIAConfig(attacks=("nope",))
    empty = CliRunner().invoke(cli, ["mia", "--federated", str(tmp_path)])
    assert empty.exit_code == 1
    assert (
        empty.output.strip().splitlines()[-1]
        == f"Error: {tmp_path} holds no captured updates (no capture/model.json)"
    )
