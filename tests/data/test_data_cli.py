"""``fedleak datasets list`` and ``show``: tables, seeds, and one-line errors for bad input."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from click.testing import CliRunner

from experiments.cli import cli
from fl.data import download


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args])
    return result.exit_code, result.output


def test_data_cli_list_shows_folders_and_presence(data_root: Path) -> None:
    code, out = run("datasets", "list", "--data-dir", str(data_root), "--format", "csv")
    assert code == 0, out
    rows = {r["dataset"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["mnist"]["status"] == "present" and rows["cifar10"]["status"] == "present"
    assert rows["cifar100"]["status"] == "missing 3 files"
    assert rows["sample"]["status"] == "bundled" and rows["sample-fmnist"]["shape"] == "1x28x28"
    assert rows["cifar10"]["folder"] == str(data_root / "cifar-10-batches-py")
    assert rows["cifar100"]["classes"] == "100"


def test_data_cli_show_counts_per_client_with_totals() -> None:
    code, out = run(
        "--seed", "2", "datasets", "show", "sample", "--clients", "4", "--partition", "dirichlet", "--alpha", "0.5",
        "--format", "csv",
    )  # fmt: skip
    assert code == 0, out
    first, table = out.split("\n", 1)
    assert first == "sample train: 80 images found; 4 clients, dirichlet alpha=0.5, seed 2"
    rows = list(csv.reader(io.StringIO(table)))
    assert rows[0][:3] == ["client", "n", "airplane"] and len(rows) == 6
    body, total = rows[1:-1], rows[-1]
    assert total[:2] == ["total", "80"] and total[2:] == ["8"] * 10
    assert sum(int(r[1]) for r in body) == 80
    assert all(int(r[1]) == sum(map(int, r[2:])) for r in body)
    _, again = run(
        "--seed", "2", "datasets", "show", "sample", "--clients", "4", "--partition", "dirichlet", "--format", "csv"
    )  # fmt: skip
    _, other = run(
        "--seed", "3", "datasets", "show", "sample", "--clients", "4", "--partition", "dirichlet", "--format", "csv"
    )  # fmt: skip
    assert again == out and other.split("\n", 1)[1] != table


def test_data_cli_show_real_partial_data(data_root: Path) -> None:
    code, out = run(
        "datasets", "show", "cifar10", "--data-dir", str(data_root), "--split", "test", "--partition", "shards",
        "--clients", "5",
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("cifar10 test: 1017 images found (partial: the full split has 10000)")
    assert "| total | 1017 | 105 | 93 | 100 | 104 | 92 | 87 | 114 | 102 | 110 | 110 |" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["show", "imagenet"],
            "unknown dataset 'imagenet'; valid choices: cifar10, cifar100, mnist",
        ),
        (["show", "sample", "--clients", "0"], "'--clients': 0 is not in the range x>=1"),
        (["show", "sample", "--alpha", "0"], "'--alpha': 0.0 is not in the range x>0"),
        (
            ["show", "sample", "--partition", "pathological"],
            "'pathological' is not one of 'iid', 'dirichlet', 'shards'",
        ),
        (["show", "sample", "--clients", "81"], "cannot split 80 samples among 81 clients"),
        (
            ["show", "sample", "--partition", "shards", "--clients", "50"],
            "100 shards, more than the 80 samples",
        ),
        (["show", "sample", "--split", "val"], "'val' is not one of 'train', 'test'"),
        (["list", "--format", "xml"], "'xml' is not one of 'md', 'csv', 'latex'"),
    ],
)
def test_data_cli_bad_values_are_usage_errors(args: list[str], message: str) -> None:
    code, out = run("datasets", *args)
    assert code == 2
    assert message in out and "Traceback" not in out


def test_data_cli_missing_files_offline_is_one_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: Path) -> str:
        raise URLError("offline")

    monkeypatch.setattr(download, "fetch", offline)
    code, out = run("datasets", "show", "fmnist", "--data-dir", str(tmp_path))
    assert code == 1
    error_lines = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and str(tmp_path / "FashionMNIST" / "raw") in error_lines[0]
    assert "Traceback" not in out


def test_data_cli_show_summarises_many_classes(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    labels = [i % 100 for i in range(300)]
    batch = {"data": np.zeros((300, 3072), np.uint8), "fine_labels": labels}
    for name, obj in (
        ("train", batch), ("test", batch), ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    ):  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    code, out = run(
        "datasets", "show", "cifar100", "--data-dir", str(tmp_path), "--clients", "3", "--partition", "shards",
        "--shards", "40", "--format", "csv",
    )  # fmt: skip
    assert code == 0, out
    rows = list(csv.reader(io.StringIO(out.split("\n", 1)[1])))
    assert rows[0] == ["client", "n", "classes present", "largest class", "largest share"]
    assert all(int(r[2]) <= 40 for r in rows[1:-1])
    assert rows[-1][:3] == ["total", "300", "100"]
