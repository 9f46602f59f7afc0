"""Run records, atomic writes, code-free persistence, seeding."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
import torch

from fl.core.runs import (
    atomic_write_json,
    atomic_write_text,
    init_run_dir,
    load_tensors,
    read_json,
    save_tensors,
)
from fl.seed import derive_seed, make_generator


def test_run_dir_records_config_seed_versions_device(tmp_path: Path) -> None:
    out = init_run_dir(tmp_path / "run", config={"model": "mlp", "lr": 0.1}, seed=3, device="cpu")
    assert read_json(out / "config.json") == {"lr": 0.1, "model": "mlp"}
    env = read_json(out / "env.json")
    assert env["seed"] == 3
    assert env["device"] == "cpu"
    assert env["versions"]["torch"] == torch.__version__
    assert {"flwr", "opacus", "numpy"} <= set(env["versions"])


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"psnr": 30.0})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"psnr": Unserialisable()})
    assert json.loads(path.read_text()) == {"psnr": 30.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_tensors_roundtrip_without_pickle(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(3, 4), "labels": torch.tensor([1, 2, 3])}
    save_tensors(tmp_path / "t.safetensors", tensors, metadata={"round": "1"})
    back = load_tensors(tmp_path / "t.safetensors")
    assert set(back) == {"w", "labels"}
    assert torch.equal(back["w"], tensors["w"]) and torch.equal(back["labels"], tensors["labels"])


def test_loading_refuses_a_pickle_payload(tmp_path: Path) -> None:
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(Exception):  # noqa: B017  (safetensors raises its own error type)
        load_tensors(evil)


def test_generators_and_derived_seeds_are_deterministic_and_distinct() -> None:
    a = torch.rand(3, generator=make_generator(5))
    b = torch.rand(3, generator=make_generator(5))
    assert torch.equal(a, b)
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, c) for c in range(100)}) == 100
    assert derive_seed(0, "shadow") != derive_seed(0, "target")
