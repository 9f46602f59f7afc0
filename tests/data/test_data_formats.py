"""Corrupt files, the restricted unpickler, CIFAR-100's format and the bundled sample sets."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fl.core.errors import ConfigError, DataError
from fl.data import DATASETS, ImageDataset, load_dataset
from fl.data.idx import read_idx
from fl.data.unpickle import load_pickle


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_cifar100(folder: Path, n: int = 6, *, protocol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A tiny CIFAR-100 in the official format: dicts with ``data``, ``fine_labels``; ``meta``."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    names = [f"class_{i}" for i in range(100)]
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    fine = [int(v) for v in rng.integers(0, 100, size=n)]
    for split in ("train", "test"):
        batch = {"filenames": [f"{i}.png" for i in range(n)], "fine_labels": fine,
                 "coarse_labels": [f // 5 for f in fine], "data": data}  # fmt: skip
        (folder / split).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {"fine_label_names": names, "coarse_label_names": [f"super_{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return data, np.array(fine)


class Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_data_cifar100_parser_reads_the_official_format(tmp_path: Path, protocol: int) -> None:
    data, fine = write_cifar100(tmp_path / "cifar-100-python", protocol=protocol)
    ds = load_dataset("cifar100", split="test", root=tmp_path, download=False)
    assert ds.num_classes == 100 and ds.classes[3] == "class_3" and ds.shape == (3, 32, 32)
    assert ds.labels.tolist() == fine.tolist()
    assert torch.equal(ds.images[1, 2, 0], torch.from_numpy(data[1, 2048:2080]).float() / 255)


def test_data_restricted_unpickler_refuses_code_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": Exploit(marker)}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"]}))
    with pytest.raises(DataError, match=r"test_batch.*refused to load global (posix|os)\.system"):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(Exploit(marker))) == 0 and marker.exists()  # the exploit is live


def test_data_codecs_encode_is_admitted_for_latin1_only(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": b"\x00\xff"}, protocol=2))  # bytes -> _codecs.encode
    assert load_pickle(path) == {"data": b"\x00\xff"}
    path.write_bytes(pickle.dumps(b"ab", protocol=2).replace(b"latin1", b"rot13 "))
    with pytest.raises(DataError, match=r"refused _codecs\.encode with encoding 'rot13 '"):
        load_pickle(path)


def test_data_restricted_unpickler_still_reads_real_batches(data_root: Path) -> None:
    batch = load_pickle(data_root / "cifar-10-batches-py" / "test_batch")
    assert batch["data"].shape == (1017, 3072) and batch["data"].dtype == np.uint8
    assert load_pickle(data_root / "cifar-10-batches-py" / "batches.meta")["label_names"][0] == "airplane"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a valid CIFAR pickle"),
        (b"\x80\x02}q\x00(X\x04\x00\x00\x00data", "not a valid CIFAR pickle"),  # truncated
        (b"garbage that is not a pickle at all", "not a valid CIFAR pickle"),
        (pickle.dumps([1, 2, 3]), "does not hold a CIFAR batch dict"),
        (
            pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}),
            r"shape \(N, 3072\)",
        ),
        (
            pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
            "2 images but 1 labels",
        ),
    ],
    ids=["empty", "truncated", "garbled", "not-a-dict", "bad-shape", "label-count"],
)
def test_data_bad_cifar_batch_is_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(content)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    with pytest.raises(DataError, match=message) as err:
        load_dataset("cifar10", split="test", root=tmp_path, download=False)
    assert str(folder / "test_batch") in str(err.value) and "\n" not in str(err.value)


def test_data_truncated_real_batch_is_refused(data_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes((data_root / "cifar-10-batches-py" / "test_batch").read_bytes()[:50000])
    with pytest.raises(DataError, match="test_batch is not a valid CIFAR pickle"):
        load_pickle(path)


def test_data_idx_reader_checks_magic_and_length(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "good-idx3-ubyte"
    good.write_bytes(idx_bytes(images))
    assert np.array_equal(read_idx(good, ndim=3), images)
    cases = {
        "labels-as-images": (idx_bytes(np.zeros(5, np.uint8)), "magic 2049, expected 2051"),
        "bad-magic": (b"\x12\x34\x56\x78" + idx_bytes(images)[4:], "not an IDX file"),
        "short-header": (idx_bytes(images)[:10], "shorter than its 16-byte header"),
        "short-body": (
            idx_bytes(images)[:-5],
            r"header says 2x3x4 \(24 bytes\) but 19 bytes follow",
        ),
        "empty": (b"", "magic None"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=message):
            read_idx(path, ndim=3)


def test_data_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels = np.random.default_rng(0).integers(0, 10, 1000).astype(np.uint8)
    packed = gzip.compress(idx_bytes(labels))
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=f"cannot read {path}"):
        read_idx(path, ndim=1)


def test_data_mismatched_image_and_label_counts(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError, match=r"3 images but .* 2 labels"):
        load_dataset("mnist", split="test", root=tmp_path, download=False)


@pytest.mark.parametrize(("name", "shape"), [("sample", (3, 32, 32)), ("sample-fmnist", (1, 28, 28))])
def test_data_sample_needs_no_data_directory(
    name: str, shape: tuple[int, int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDLEAK_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train = load_dataset(name, split="train")
    test = load_dataset(name, split="test")
    assert (len(train), len(test)) == (80, 20) and train.shape == test.shape == shape
    assert train.class_counts().tolist() == [8] * 10 and test.class_counts().tolist() == [2] * 10
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0 and train.images.std() > 0.1
    assert not any(tmp_path.iterdir())  # nothing was created in the cache


def test_data_sample_files_stay_small() -> None:
    folder = Path(DATASETS.get("sample").folder)
    assert sum(p.stat().st_size for p in folder.glob("*.npz")) < 500_000


def test_data_unknown_names_list_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'; valid choices: .*cifar10.*sample"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="unknown split 'val'; valid choices: train, test"):
        load_dataset("sample", split="val")


def test_data_image_dataset_subset_and_validation() -> None:
    ds = load_dataset("sample", split="test")
    sub = ds.subset(np.array([3, 0]))
    assert len(sub) == 2 and sub.classes == ds.classes
    assert torch.equal(sub.images[1], ds.images[0]) and sub.labels.tolist() == [1, 0]
    with pytest.raises(DataError, match=r"labels fall outside 0\.\.9"):
        ImageDataset("bad", ds.images[:1], torch.tensor([10]), ds.classes)
    with pytest.raises(DataError, match="images must be float32"):
        ImageDataset("bad", ds.images[:1].double(), ds.labels[:1], ds.classes)
