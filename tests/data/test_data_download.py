"""Downloads: offline failure in one line, checksum rejection, verified download and extraction."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

from fl.core.errors import DataError
from fl.data import download, load_dataset
from fl.data.source import Resource


def offline(url: str, dest: Path) -> str:
    raise URLError("network is unreachable")


def test_data_offline_fails_with_one_line_naming_folder_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "fetch", offline)
    root = tmp_path / "root"
    with pytest.raises(DataError) as err:
        load_dataset("mnist", split="test", root=root)
    message = str(err.value)
    assert "\n" not in message
    assert str(root / "MNIST" / "raw") in message
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "network is unreachable" in message
    assert not root.exists()  # the failed download left no empty folders behind


def test_data_downloads_can_be_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(
        DataError,
        match=r"cifar-10-batches-py: expected test_batch, batches\.meta \(downloads disabled\)",
    ):
        load_dataset("cifar10", split="test", root=tmp_path, download=False)


def test_data_checksum_mismatch_is_rejected(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared copies were recompressed, so their MD5 differs from the official one."""
    real_fetch = download.fetch

    def local_mirror(url: str, dest: Path) -> str:
        return real_fetch((data_root / "MNIST" / "raw" / url.rsplit("/", 1)[1]).as_uri(), dest)

    monkeypatch.setattr(download, "fetch", local_mirror)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"checksum mismatch .*expected 9fb629c4189551a2d022fa330f9573f3"):
        load_dataset("mnist", split="test", root=root)
    assert not root.exists()


def test_data_verified_download_is_moved_into_place(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    md5 = hashlib.md5(src.read_bytes(), usedforsecurity=False).hexdigest()
    folder = tmp_path / "MNIST" / "raw"
    resource = Resource(src.name, ("file:///nonexistent/mirror/x.gz", src.as_uri()), md5)
    download.download_resource(resource, folder, root=tmp_path)  # first mirror fails, second works
    assert [p.name for p in folder.iterdir()] == [src.name]
    assert (folder / src.name).read_bytes() == src.read_bytes()


def make_archive(path: Path, members: dict[str, bytes]) -> Resource:
    """A tar.gz at ``path`` holding ``members``, as a Resource with its true MD5."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    path.write_bytes(buf.getvalue())
    md5 = hashlib.md5(buf.getvalue(), usedforsecurity=False).hexdigest()
    return Resource(path.name, (path.as_uri(),), md5, extract=True)


def test_data_archive_is_extracted_into_the_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "fine_labels": [0, 5, 99, 5]}
    meta = {"fine_label_names": [f"c{i}" for i in range(100)]}
    members = {f"cifar-100-python/{name}": pickle.dumps(obj, protocol=2)
               for name, obj in (("train", batch), ("test", batch), ("meta", meta))}  # fmt: skip
    resource = make_archive(tmp_path / "cifar-100-python.tar.gz", members)
    root = tmp_path / "root"
    download.download_resource(resource, root / "cifar-100-python", root=root)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-100-python"]
    ds = load_dataset("cifar100", split="train", root=root, download=False)
    assert ds.labels.tolist() == [0, 5, 99, 5] and ds.classes[99] == "c99"


def test_data_archive_escaping_the_root_is_refused(tmp_path: Path) -> None:
    resource = make_archive(tmp_path / "evil.tar.gz", {"../escaped": b"x", "ok/file": b"y"})
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"could not download evil\.tar\.gz: .*outside"):
        download.download_resource(resource, root / "ok", root=root)
    assert not (tmp_path / "escaped").exists() and not (root / "ok" / "file").exists()
