"""Every epsilon a federation reports equals the accountant (Opacus', Flower's) called directly on the
parameters its round record holds, and says what it protects (a record or a client) at which delta;
failed and timed-out clients are recorded, and what central DP's accountant assumed with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant
from opacus.accountants import create_accountant

from defenses import DefenseConfig, build_defense
from experiments.cli import cli
from fl.data import load_dataset
from fl.federation.capture import write_partitions
from fl.federation.client import ClientSpec, make_client_app
from fl.federation.client_side import DirectoryStore
from fl.federation.inline_grid import InlineGrid
from fl.federation.server import FederationServer, ServerSpec
from fl.federation.settings import ModelSpec, TrainSettings

BASE = [
    "-q",
    "simulate",
    "--dataset",
    "sample",
    "--clients",
    "3",
    "--engine",
    "inline",
    "--rounds",
    "3",
    "--local-steps",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "0.1",
]


def _history(tmp_path, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*BASE, *args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "result.json").read_text())["history"]


def _opacus_epsilon(kind: str, sigmas: list[float], rates: list[float], steps: list[float], delta: float) -> float:
    acc = create_accountant(kind)
    acc.history = [(s, q, int(n)) for s, q, n in zip(sigmas, rates, steps, strict=True)]
    return float(acc.get_epsilon(delta=delta))


def _flower_epsilon(z: float, releases: int, clients: int, delta: float) -> float:
    acc = RdpAccountant(
        PrivacyConfig(
            target_delta=delta,
            population_size=clients,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    for _ in range(releases):
        acc.compose(GaussianPrivacyEvent(noise_multiplier=z, sample_size=clients, population_size=clients))
    return acc.get_privacy_spent().epsilon


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_dp_local_epsilon_is_opacus_on_the_recorded_parameters(tmp_path, accountant):
    history = _history(tmp_path, "--defense", "dp-local", "--noise-multiplier", "1.1", "--accountant", accountant)
    worst = 0.0
    for record in history:
        assert record["epsilon_unit"] == "record" and record["delta"] == 1e-5
        for client in record["privacy"]["clients"].values():
            direct = _opacus_epsilon(
                accountant, client["noise_multiplier"], client["sample_rate"], client["steps"], client["delta"]
            )
            assert client["epsilon"] == pytest.approx(direct, abs=1e-6)
            assert client["noise_multiplier"] == [1.1]
            assert client["sample_rate"] == [pytest.approx(1 / 4)]  # Opacus: 1 / batches (27 or 26 records, batch 8)
            worst = max(worst, client["epsilon"])
        assert record["epsilon"] == pytest.approx(worst, abs=1e-12)  # the worst client so far
        assert "train_loss" not in record  # a DP client does not report its (unaccounted) loss
    assert history[-1]["privacy"]["clients"]["0"]["steps"] == [3 * 2]  # every round's local steps, accounted


def test_ldp_epsilon_is_opacus_on_the_recorded_parameters(tmp_path):
    history = _history(tmp_path, "--defense", "ldp", "--epsilon", "2", "--clipping-norm", "1")
    sigma = math.sqrt(2 * math.log(1.25 / 1e-5)) / 2  # LocalDpMod's std at sensitivity 2C, over 2C
    for record in history:
        assert record["epsilon_unit"] == "client-local"
        for client in record["privacy"]["clients"].values():
            assert client["noise_multiplier"] == pytest.approx(sigma)
            direct = _opacus_epsilon("rdp", [sigma], [1.0], [client["releases"]], client["delta"])
            assert client["epsilon"] == pytest.approx(direct, abs=1e-6)
    assert history[-1]["privacy"]["clients"]["0"]["releases"] == 3


@pytest.mark.parametrize("clipping", ["server-fixed", "client-fixed", "adaptive", "client-adaptive"])
def test_dp_central_epsilon_is_flowers_accountant_on_the_recorded_releases(tmp_path, clipping):
    history = _history(
        tmp_path,
        "--defense",
        "dp-central",
        "--noise-multiplier",
        "0.5",
        "--clipping",
        clipping,
        "--clipped-count-stddev",
        "1.0",
    )
    z_update = 0.5 if "fixed" in clipping else (0.5**-2 - (2 * 1.0) ** -2) ** -0.5  # Andrew et al., Thm 1
    for n, record in enumerate(history, start=1):
        assert record["epsilon_unit"] == "client-central"
        release = record["privacy"]
        assert release["released"] and release["releases"] == n and release["clients"] == 3
        assert release["noise_std"] == pytest.approx(z_update * release["clipping_norm"] / 3)
        assert release["noise_std"] == pytest.approx(release["update_noise_multiplier"] * release["clipping_norm"] / 3)
        assert release["count_stddev"] == (0.0 if "fixed" in clipping else 1.0)
        direct = _flower_epsilon(release["noise_multiplier"], n, 3, record["delta"])
        assert record["epsilon"] == pytest.approx(direct, abs=1e-6)


def test_compare_table_gives_each_unit_its_own_column(tmp_path):
    result = CliRunner().invoke(
        cli, [*BASE, "--rounds", "1", "--defense", "dp-local", "--baseline", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    header, _, *rows = (tmp_path / "compare.md").read_text().splitlines()
    columns = [c.strip() for c in header.split("|")[4:7]]
    assert columns == ["ε per record", "ε per client, central", "ε per client, local"]
    cells = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[4:7]] for row in rows}
    eps = json.loads((tmp_path / "result.json").read_text())["epsilon"]
    assert cells == {"none": ["-", "-", "-"], "dp-local": [f"{eps:.2f} (δ=1e-05)", "-", "-"]}


DATA = load_dataset("sample")
SPEC = ModelSpec("mlp", DATA.shape, DATA.num_classes, options={"hidden": 16, "depth": 1})


def _federate(tmp_path, defense, *, lost=frozenset(), faults=frozenset(), rounds: int = 3, clients: int = 2):
    parts = tuple(np.array_split(np.arange(len(DATA)), clients))
    client = ClientSpec(
        model=SPEC,
        dataset="sample",
        partitions=parts,
        truth_dir=str(tmp_path / "truth"),
        lost=lost,
        faults=faults,
        client_dir=str(tmp_path / "clients"),
    )
    spec = ServerSpec(
        model=SPEC,
        num_clients=clients,
        num_rounds=rounds,
        settings=TrainSettings(local_steps=1, batch_size=8, lr=0.1),
        timeout=5.0,
    )
    torch.manual_seed(0)
    server = FederationServer(
        spec=spec,
        run_dir=tmp_path,
        initial_weights=SPEC.build().state_dict(),
        test_data=(DATA.images, DATA.labels),
        defense=defense,
    )
    write_partitions(tmp_path / "truth", "sample", "train", list(parts))
    server.run(InlineGrid(make_client_app(client, defense), clients))
    return server.result


@pytest.mark.parametrize("clipping", ["server-fixed", "adaptive"])
@pytest.mark.parametrize("failure", ["lost", "faults"])
def test_dp_central_round_with_a_failed_client_releases_nothing_and_says_why(tmp_path, clipping, failure):
    defense = build_defense(
        DefenseConfig(name="dp-central", noise_multiplier=0.5, clipping=clipping, clipped_count_stddev=1.0)
    )
    result = _federate(tmp_path, defense, **{failure: frozenset({(2, 1)})})
    r1, r2, r3 = result.history
    assert (r1["failed"], r2["failed"], r3["failed"]) == ([], [1], [])  # a lost reply is a failure too
    assert not r2["privacy"]["released"] and r2["privacy"]["noise_std"] == 0.0
    why = "1 of 2 sampled clients replied" if failure == "lost" else "1 of 2 sampled clients failed"
    assert r2["privacy"]["reason"] == f"{why}; accounted central DP releases only complete rounds"
    assert r2["epsilon"] == r1["epsilon"] < r3["epsilon"]  # nothing released, nothing spent
    assert r2["accuracy"] == r1["accuracy"]  # the global model did not move
    assert r3["privacy"]["releases"] == 2
    assert r3["epsilon"] == pytest.approx(_flower_epsilon(0.5, 2, 2, 1e-5), abs=1e-6)


def test_a_lost_reply_still_counts_in_the_clients_own_accountant(tmp_path):
    defense = build_defense(DefenseConfig(name="dp-local", noise_multiplier=1.0))
    result = _federate(tmp_path, defense, lost=frozenset({(2, 1)}))
    assert result.history[1]["failed"] == [1] and "1" not in result.history[1]["privacy"]["clients"]
    # the client trained (and released) in round 2: its round-3 epsilon covers 3 participations
    assert DirectoryStore(tmp_path / "clients").load(1).participations == 3
    assert result.history[2]["privacy"]["clients"]["1"]["steps"] == [3]


def test_final_epsilon_is_the_clients_own_accountant_when_a_last_reply_was_lost(tmp_path):
    """The server's record holds what the clients last reported; the run's result reads the clients' side."""
    from experiments.federated import SimulationConfig, run_federation

    cfg = SimulationConfig(
        dataset="sample",
        clients=2,
        rounds=2,
        engine="inline",
        capture="none",
        defense=DefenseConfig(name="dp-local", noise_multiplier=1.0),
        train=TrainSettings(local_steps=2, batch_size=8, lr=0.1),
    )
    result = run_federation(cfg, out_dir=tmp_path, progress=False)
    history = json.loads((tmp_path / "result.json").read_text())["history"]
    store = DirectoryStore(tmp_path / "clients")
    defense = build_defense(cfg.defense)
    own = max(defense.client_epsilon(store.load(c).state) for c in (0, 1))
    assert result.epsilon == own == pytest.approx(history[-1]["epsilon"], abs=1e-12)
    record = store.load(1)
    record.state["dp_history"][0][2] += 2  # as if a third, lost participation had been trained
    store.save(1, record)
    from experiments.federated.federation import clients_epsilon

    assert clients_epsilon(defense, tmp_path / "clients") > history[-1]["epsilon"]
