"""The federation on Flower's deployment engine: a SuperLink and three SuperNodes as real processes.

Each SuperNode reads only its own partition file (``fedleak simulate --export-partitions``) and
records what it trained on under its own ``truth-dir``; the ServerApp holds no client data
(``node-data=true``). The curious server's capture is attacked afterwards, once the truth is joined.
The app bundle ``flwr run`` ships carries text files only, so the data is a small Fashion-MNIST
folder in the official format, made from the bundled sample (the bundle cannot carry the sample).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from experiments.cli import cli
from experiments.flower.localhost import LocalDeployment
from fl.data import load_dataset
from tests.data.test_data_formats import idx_bytes

ROOT = Path(__file__).resolve().parents[2]
SECRET = "00112233445566778899aabbccddeeff"
COMMON = "dataset='fmnist' clients=3 client-examples=8 local-steps=1 batch-size=4 lr=0.1 capture='all' node-data=true"


def fmnist_folder(root: Path) -> Path:
    """The bundled sample-fmnist (80 + 20 images) as a Fashion-MNIST data folder (idx files)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_dataset("sample-fmnist", split=split)
        pixels = (data.images[:, 0] * 255).round().to(torch.uint8).numpy()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(pixels))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(data.labels.numpy()))
    return root


pytestmark = pytest.mark.skipif(shutil.which("ps") is None, reason="needs ps to check every process stopped")


def deploy(base: Path) -> LocalDeployment:
    """Export 3 clients' partitions, then start a SuperLink and 3 SuperNodes each holding one."""
    nodes = base / "nodes"
    data = fmnist_folder(base / "data")
    res = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--dataset",
            "fmnist",
            "--data-dir",
            str(data),
            "--clients",
            "3",
            "--client-examples",
            "8",
            "--export-partitions",
            "--out",
            str(nodes),
        ],
    )
    assert res.exit_code == 0, res.output
    (base / "secret").write_text(SECRET + "\n")
    configs = [
        f"partition-id={i} data-file='{nodes / f'client_{i:04d}.npz'}' truth-dir='{base / 'node-truth'}' "
        f"client-secret-file='{base / 'secret'}'"
        for i in range(3)
    ]
    return LocalDeployment(base / "flwr-home", configs)


@pytest.fixture
def deployment(tmp_path):
    dep = deploy(tmp_path)
    try:
        yield dep.start(), tmp_path
    finally:
        dep.stop()
        assert dep.alive() == [], "a process of the deployment is still running"


def summary(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


def test_deployment_engine_runs_dp_local_rounds_captures_and_the_capture_is_attacked(deployment):
    dep, base = deployment
    run = base / "run"
    start = time.monotonic()
    proc = dep.flwr_run(
        ROOT, f"{COMMON} rounds=2 defense='dp-local' noise-multiplier=1.0 data-dir='{base / 'data'}' out='{run}'"
    )
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert time.monotonic() - start < 240
    result = summary(run)
    assert result["rounds_done"] == 2 and result["failures"] == {}, result
    assert result["epsilon"] > 0 and result["epsilon_unit"] == "record"
    # the server's side: every sampled client's update captured, no record of what they trained on
    for r in (1, 2):
        assert sorted(p.name for p in (run / "capture" / f"round_{r:04d}").glob("client_*")) == [
            f"client_{c:04d}.safetensors" for c in range(3)
        ]
    assert not (run / "truth").exists()
    # each node recorded its truth on its own side; the experimenter joins it with who holds what
    node_truth = base / "node-truth"
    assert sorted(p.name for p in (node_truth / "round_0001").iterdir()) == [f"client_{c:04d}.json" for c in range(3)]
    shutil.copytree(node_truth, run / "truth")
    shutil.copytree(base / "nodes" / "truth", run / "truth", dirs_exist_ok=True)
    res = CliRunner().invoke(
        cli,
        [
            "attack",
            str(run),
            "--attack",
            "ig",
            "--round",
            "1",
            "--client",
            "0",
            "--iters",
            "5",
            "--data-dir",
            str(base / "data"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "ig on round 1, client 0: PSNR" in res.output


def test_deployment_engine_a_supernode_killed_mid_run_is_reported_and_the_run_goes_on(deployment):
    dep, base = deployment
    run = base / "run-killed"
    proc = dep.flwr_run(ROOT, f"{COMMON} rounds=3 data-dir='{base / 'data'}' out='{run}'")
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint" / "state.json").is_file():  # round 1 is done
            assert time.monotonic() < deadline and proc.poll() is None, "round 1 did not finish"
            time.sleep(0.2)
        dep.kill_node(2)
        output, _ = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    history = json.loads((run / "result.json").read_text())["history"]
    assert [h["round"] for h in history] == [1, 2, 3]
    assert history[0]["failed"] == [] and history[1]["failed"] == [2] and history[2]["failed"] == [2], history
    assert "failed clients [2]" in output
