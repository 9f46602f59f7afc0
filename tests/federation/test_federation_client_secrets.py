"""The curious server holds the run's seed, config and every captured update, yet cannot regenerate a
client's private randomness (LocalDpMod noise, dropout masks), nor reset or replay its accountant.

Each test plays the server with what it holds (``config.json``, ``capture/``) and the derivation
fedleak used to use (client randomness from the run seed), and checks it learns nothing; a
positive control regenerates the same randomness from the client's own key (``clients/``, the
clients' side), so the test would see it if the server could. One clients' secret used for two
runs with different settings gives them different noise (no cancellation across runs).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from torch import nn

from defenses import DefenseConfig, build_defense
from experiments.cli import cli
from fl.data import load_dataset
from fl.federation.capture import CaptureStore
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.client_side import ClientKey, DirectoryStore
from fl.federation.inline_grid import InlineGrid
from fl.federation.settings import ModelSpec, TrainSettings
from fl.models import record_masks, recorded_masks, set_dropout_generator
from fl.seed import derive_seed, make_generator, private_generator

BASE = [
    "-q",
    "simulate",
    "--dataset",
    "sample",
    "--clients",
    "2",
    "--engine",
    "inline",
    "--capture",
    "all",
    "--rounds",
    "1",
    "--local-steps",
    "1",
    "--batch-size",
    "4",
    "--lr",
    "0.1",
]
SECRET = "00112233445566778899aabbccddeeff"


def _secret_file(tmp_path, secret: str = SECRET) -> str:
    path = tmp_path / "secret.txt"
    path.write_text(secret + "\n")
    return str(path)


def _run(tmp_path, *args: str) -> CaptureStore:
    result = CliRunner().invoke(cli, [*BASE, *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return CaptureStore(tmp_path)


def _server_seed(run_dir) -> int:
    return int(json.loads((run_dir / "config.json").read_text())["seed"])


def _key(run_dir, client: int) -> ClientKey:
    record = DirectoryStore(run_dir / "clients").load(client)
    assert record is not None
    return record.key


def _flat(update: dict[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in update.values()]).astype(np.float64)


def _ldp_noise(cap, std: float) -> np.ndarray:
    """LocalDpMod's noise drawn from NumPy's global RNG in its current state, array by array in the
    model's order, laid out like :func:`_flat` of the captured update (whose keys are sorted)."""
    shapes = {k: v.shape for k, v in cap.model.build().state_dict().items()}
    noise = {k: np.random.normal(0, std, shape).astype(np.float32) for k, shape in shapes.items()}
    return np.concatenate([noise[k].ravel() for k in cap.update])


def test_curious_server_cannot_regenerate_local_dp_noise(tmp_path):
    store = _run(tmp_path / "run", "--defense", "ldp", "--epsilon", "1", "--clipping-norm", "1")
    tmp_path = tmp_path / "run"
    std = 2.0 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 1.0  # sensitivity 2C = 2
    seed = _server_seed(tmp_path)
    for client in (0, 1):
        cap = store.load(1, client)
        received = _flat(cap.update)
        assert np.linalg.norm(received) > 1000  # what arrives is mostly noise
        np.random.seed(derive_seed(seed, "client-mods", client, 1))  # the server's best guess: the run seed
        guessed = received - _ldp_noise(cap, std)
        assert np.linalg.norm(guessed) > 0.9 * np.linalg.norm(received)  # subtracting it removes nothing
        np.random.seed(_key(tmp_path, client).numpy_seed("client-mods", 0))  # the client's own key
        clipped = received - _ldp_noise(cap, std)
        assert np.linalg.norm(clipped) <= 1.0 + 1e-2  # ... recovers the clipped update: the noise was the key's


def test_curious_server_cannot_regenerate_dropout_masks(tmp_path):
    store = _run(tmp_path, "--defense", "dropout", "--dropout", "0.25")
    data = load_dataset("sample")
    seed = _server_seed(tmp_path)
    for client in (0, 1):
        cap = store.load(1, client)
        idx = torch.as_tensor(store.true_indices(1, client))  # evaluation truth: the batch the client used

        def replay(
            generator: torch.Generator, cap=cap, idx=idx
        ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
            """The client's one SGD step with dropout masks drawn from ``generator``: (masks, update)."""
            model = cap.model.build()
            model.load_state_dict(cap.weights_before)
            model.train()
            set_dropout_generator(model, generator)
            record_masks(model)
            loss = nn.functional.cross_entropy(model(data.images[idx]), data.labels[idx])
            grads = torch.autograd.grad(loss, list(model.parameters()))
            names = [n for n, _ in model.named_parameters()]
            return recorded_masks(model), {n: -0.1 * g for n, g in zip(names, grads, strict=True)}

        true_masks, true_update = replay(private_generator(_key(tmp_path, client).seed("train", 0), "dropout"))
        for name, value in true_update.items():  # the client's key replays its update exactly
            torch.testing.assert_close(cap.update[name], value, rtol=0, atol=1e-6)
        guessed_masks, guessed_update = replay(make_generator(derive_seed(seed, "client", client, 1) + 1))
        agree = torch.cat([(guessed_masks[k] == true_masks[k]).flatten().float() for k in true_masks]).mean()
        assert abs(float(agree) - (0.75**2 + 0.25**2)) < 0.05  # chance agreement of two Bernoulli(0.75) masks
        assert not all(torch.allclose(cap.update[k], guessed_update[k], atol=1e-4) for k in guessed_update)


def test_client_secret_is_in_no_file_of_the_servers_side(tmp_path, monkeypatch):
    secret_file = _secret_file(tmp_path)
    argv = [
        "fedleak",
        *BASE,
        "--defense",
        "dropout",
        "--client-secret-file",
        secret_file,
        "--out",
        str(tmp_path / "run"),
    ]
    monkeypatch.setattr("sys.argv", argv)  # env.json records the command line
    _run(tmp_path / "run", "--defense", "dropout", "--client-secret-file", secret_file)
    run = tmp_path / "run"
    secrets = [SECRET, *(f"{_key(run, c).value:032x}" for c in (0, 1))]
    server_side = [p for p in run.rglob("*") if p.is_file() and p.parts[len(run.parts)] not in ("clients", "truth")]
    assert {"config.json", "env.json", "result.json"} <= {p.name for p in server_side}
    assert any("capture" in p.parts for p in server_side) and any("checkpoint" in p.parts for p in server_side)
    for path in server_side:
        assert not any(s.encode() in path.read_bytes() for s in secrets), path
    assert (run / "clients" / "client_secret").read_text().strip() == SECRET  # kept on the clients' side only


@pytest.mark.parametrize("secret", ["5", "0123456789abcdef", "zz" * 16, "abc" * 11])
def test_a_short_or_malformed_client_secret_is_refused_in_one_line(tmp_path, secret):
    result = CliRunner().invoke(
        cli, [*BASE, "--client-secret-file", _secret_file(tmp_path, secret), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2, result.output
    assert "a client secret must be an even number of at least 32 hex digits (128 bits)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_same_secret_and_settings_rerun_bit_for_bit_and_fresh_secrets_do_not(tmp_path):
    from fl.federation.checkpoint import Checkpoint

    def weights(name: str, *args: str) -> dict[str, torch.Tensor]:
        _run(tmp_path / name, "--defense", "dropout", *args)
        return Checkpoint.load(tmp_path / name).weights

    a, b = (weights(n, "--client-secret-file", _secret_file(tmp_path)) for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rerun = weights("c", "--client-secret-file", str(tmp_path / "a" / "clients" / "client_secret"))
    assert all(torch.equal(a[k], rerun[k]) for k in a)  # the secret an earlier run kept reruns it
    d, e = weights("d"), weights("e")  # fresh secrets from the OS: different masks and batches
    assert not all(torch.equal(d[k], e[k]) for k in d)


def test_one_secret_gives_two_differently_set_runs_different_noise(tmp_path):
    """Subtracting two LDP updates made with the same noise would cancel it; other settings, other keys."""
    secret = _secret_file(tmp_path)
    args = ["--defense", "ldp", "--epsilon", "1", "--client-secret-file", secret]
    updates = []
    for name, lr in (("a", "0.1"), ("b", "1e-9")):
        cap = _run(tmp_path / name, *args, "--lr", lr).load(1, 0)
        updates.append(_flat(cap.update))
    assert np.linalg.norm(updates[0] - updates[1]) > 0.9 * np.linalg.norm(updates[0])


def test_resume_refuses_another_client_secret(tmp_path):
    run = str(tmp_path / "run")
    result = CliRunner().invoke(cli, [*BASE, "--rounds", "2", "--stop-after-round", "1", "--out", run])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        cli, [*BASE, "--rounds", "2", "--client-secret-file", _secret_file(tmp_path), "--resume", "--out", run]
    )
    assert result.exit_code == 2
    assert "--resume with a client secret other than the one the run's clients hold" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("defense", [["dp-local", "--noise-multiplier", "1.0"], ["ldp", "--epsilon", "2"]])
def test_resume_continues_the_clients_own_accountants(tmp_path, defense):
    """Stopped after round 1 and resumed (its secret read back from clients/): the same weights and
    the same per-round epsilon as the uninterrupted run with that secret."""
    from fl.federation.checkpoint import Checkpoint

    args = [*BASE, "--rounds", "3", "--defense", *defense, "--client-secret-file", _secret_file(tmp_path)]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert CliRunner().invoke(cli, [*args, "--out", full]).exit_code == 0
    assert CliRunner().invoke(cli, [*args, "--stop-after-round", "1", "--out", cut]).exit_code == 0
    result = CliRunner().invoke(cli, [*BASE, "--rounds", "3", "--defense", *defense, "--resume", "--out", cut])
    assert result.exit_code == 0, result.output
    a, b = (json.loads((tmp_path / n / "result.json").read_text()) for n in ("full", "cut"))
    assert [h["epsilon"] for h in a["history"]] == [h["epsilon"] for h in b["history"]]
    assert a["epsilon"] == b["epsilon"] > 0 and a["epsilon_unit"] == b["epsilon_unit"]
    wa, wb = Checkpoint.load(full).weights, Checkpoint.load(cut).weights
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert DirectoryStore(tmp_path / "cut" / "clients").load(0).participations == 3


DATA = load_dataset("sample")
SPEC = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 16, "depth": 1})


def _train_message(weights: dict[str, torch.Tensor], server_round: int) -> Message:
    config = {
        **TrainSettings(local_steps=2, batch_size=8, lr=0.1).to_config(),
        "server-round": server_round,
        "client-rounds": 1,
    }
    content = RecordDict({"arrays": ArrayRecord(weights), "config": ConfigRecord(config)})
    return Message(content, dst_node_id=1000, message_type=MessageType.TRAIN)


def test_a_server_cannot_reset_or_replay_the_clients_accountant(tmp_path):
    """The same round sent three times gets fresh noise and is accounted every time."""
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    spec = ClientSpec(
        model=SPEC,
        dataset="sample",
        partitions=(np.arange(40), np.arange(40, 80)),
        client_secret=SECRET,
        client_dir=str(tmp_path / "clients"),
    )
    grid = InlineGrid(make_client_app(spec, defense), 2)
    torch.manual_seed(0)
    weights = {k: v.clone() for k, v in SPEC.build().state_dict().items()}
    replies = []
    for _ in range(3):
        (reply,) = grid.send_and_receive([_train_message(weights, 1)])
        replies.append(reply)
    eps = [float(next(iter(r.content.metric_records.values()))["epsilon"]) for r in replies]
    assert eps[0] < eps[1] < eps[2]  # every release counts, whatever the server sends
    arrays = [next(iter(r.content.array_records.values())).to_torch_state_dict() for r in replies]
    assert not torch.equal(arrays[0]["1.weight"], arrays[1]["1.weight"])  # fresh noise for the replayed round
    assert not torch.equal(arrays[1]["1.weight"], arrays[2]["1.weight"])
    assert DirectoryStore(tmp_path / "clients").load(0).participations == 3


@pytest.mark.parametrize("store_dir", [True, False])
def test_client_record_lives_on_the_clients_side(tmp_path, store_dir):
    """With a client directory the record is a file there; without one, Flower's per-run context state."""
    spec = ClientSpec(
        model=SPEC,
        dataset="sample",
        partitions=(np.arange(40), np.arange(40, 80)),
        client_dir=str(tmp_path / "clients") if store_dir else None,
    )
    grid = InlineGrid(make_client_app(spec), 2)
    torch.manual_seed(0)
    weights = {k: v.clone() for k, v in SPEC.build().state_dict().items()}
    grid.send_and_receive([_train_message(weights, 1)])
    context: Context = grid.contexts[1000]
    assert (tmp_path / "clients" / "client_0000.json").is_file() == store_dir
    assert ("fedleak-client" in context.state.config_records) == (not store_dir)


def test_settings_tag_follows_what_the_clients_compute_only():
    from experiments.federated import SimulationConfig

    base = SimulationConfig(dataset="sample", clients=2, engine="inline")
    same = [
        SimulationConfig(dataset="sample", clients=2, engine="ray", attack="ig", attack_clients=1, capture="all"),
        SimulationConfig(dataset="sample", clients=2, engine="inline", stop_after_round=1, data_dir="data/"),
    ]
    other = [
        SimulationConfig(dataset="sample", clients=2, engine="inline", seed=1),
        SimulationConfig(dataset="sample", clients=2, engine="inline", train=TrainSettings(lr=0.1)),
        SimulationConfig(dataset="sample", clients=3, engine="inline"),
    ]
    assert all(c.settings_tag() == base.settings_tag() for c in same)
    assert len({c.settings_tag() for c in [base, *other]}) == 4


def test_resume_refuses_a_run_whose_clients_side_is_gone(tmp_path):
    """Without clients/ a resume would restart every accountant at zero: refused in one line (exit 1)."""
    import shutil

    run = str(tmp_path / "run")
    args = [*BASE, "--rounds", "2", "--defense", "dp-local", "--noise-multiplier", "1.0"]
    assert CliRunner().invoke(cli, [*args, "--stop-after-round", "1", "--out", run]).exit_code == 0
    shutil.rmtree(tmp_path / "run" / "clients")
    result = CliRunner().invoke(cli, [*args, "--resume", "--out", run])
    assert result.exit_code == 1, result.output
    assert "cannot resume" in result.output and "their keys and privacy accountants" in result.output
    assert "Traceback" not in result.output


def test_the_runs_epsilon_is_the_larger_of_the_clients_own_and_the_last_record(tmp_path):
    from experiments.federated.config import SimulationConfig
    from experiments.federated.federation import summarise
    from fl.federation.checkpoint import Checkpoint

    ckpt = Checkpoint(
        1,
        {},
        [
            {
                "round": 1,
                "accuracy": 0.1,
                "loss": 2.0,
                "failed": [],
                "epsilon": 3.0,
                "epsilon_unit": "record",
                "delta": 1e-5,
            }
        ],
    )
    cfg = SimulationConfig()
    assert summarise(cfg, ckpt, tmp_path, 1.0, clients_epsilon=4.0).epsilon == 4.0  # a lost last reply
    assert summarise(cfg, ckpt, tmp_path, 1.0, clients_epsilon=2.0).epsilon == 3.0
    assert summarise(cfg, ckpt, tmp_path, 1.0).epsilon == 3.0
