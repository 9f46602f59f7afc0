"""Download official dataset files into the data root, verified by MD5 (as torchvision does).

Every file is streamed into a temporary file beside its destination, checked, then moved into
place with ``os.replace``; archives are extracted with tarfile's ``data`` filter (no links out
of the root, no absolute paths). A failed or rejected download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path
from urllib.error import URLError

from tqdm import tqdm

from fl.core.errors import DataError
from fl.core.runs import default_file_mode
from fl.data.source import Resource

log = logging.getLogger("fedleak")

TIMEOUT_S = 30
CHUNK = 1 << 20


def fetch(url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest`` (with a progress bar on a terminal); return the bytes' MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "fedleak"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, dest.open("wb") as out:
        size = response.headers.get("Content-Length")
        quiet = not sys.stderr.isatty() or log.getEffectiveLevel() > logging.INFO
        with tqdm(
            total=int(size) if size else None,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            disable=quiet,
        ) as bar:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def download_resource(resource: Resource, folder: Path, *, root: Path) -> None:
    """Download ``resource`` (trying each mirror) into ``folder``, or extract it into ``root``.

    Raises :class:`DataError` when every mirror fails or the checksum does not match.
    """
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in resource.urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{resource.filename}.", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s", url)
            md5 = fetch(url, tmp)
            if md5 != resource.md5:
                errors.append(f"{url}: checksum mismatch (MD5 {md5}, expected {resource.md5})")
                continue
            if resource.extract:
                _extract(tmp, root)
            else:
                os.chmod(tmp, default_file_mode())
                os.replace(tmp, folder / resource.filename)
            return
        except (URLError, OSError, HTTPException, tarfile.TarError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {resource.filename}: {'; '.join(errors)}")


def download_all(resources: Sequence[Resource], folder: Path, *, root: Path) -> None:
    """Download every resource; on failure, remove the folders this call created and left empty."""
    fresh = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        for resource in resources:
            download_resource(resource, folder, root=root)
    except BaseException:
        for path in fresh:  # innermost first
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise


def _extract(archive: Path, root: Path) -> None:
    """Extract a verified tar.gz into a staging folder, then move in the files ``root`` lacks.

    Files already under ``root`` are never overwritten or deleted.
    """
    if not hasattr(tarfile, "data_filter"):
        raise DataError("extracting archives safely needs Python >= 3.10.12 (tarfile filters)")
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = root / path.relative_to(staging)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
