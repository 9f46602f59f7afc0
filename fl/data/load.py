"""``load_dataset``: a dataset by name from the data root, downloading what is missing."""

from __future__ import annotations

import logging
from pathlib import Path

from fl.core.errors import DataError
from fl.data.dataset import ImageDataset
from fl.data.download import download_all
from fl.data.source import DATASETS, check_split, resolve_root

log = logging.getLogger("fedleak")
_ANNOUNCED: set[str] = set()


def load_dataset(
    name: str, *, split: str = "train", root: str | Path | None = None, download: bool = True
) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` from ``root`` (see :func:`resolve_root`).

    Missing files are downloaded from the official sources (MD5-checked) when ``download`` is
    true and the network answers; otherwise one :class:`DataError` names the folder and the files
    it expects. Partial copies (fewer images than the official release) are accepted and logged.
    """
    source = DATASETS.get(name)
    check_split(split)
    base = Path() if source.bundled else resolve_root(root)
    folder = source.folder_path(base)
    missing = source.missing(base, split)
    if missing:
        reason = "downloads disabled"
        if download and source.resources:
            try:
                needed = [r for r in source.resources if r.extract or r.filename in missing]
                download_all(needed, folder, root=base)
            except (DataError, OSError) as exc:
                reason = f"download failed: {exc}"
            missing = source.missing(base, split)
        if missing:
            raise DataError(
                f"{name} {split}: files missing in {folder}: expected {', '.join(missing)} "
                f"({reason}); put them there or choose another root with --data-dir / FEDLEAK_DATA"
            )
    images, labels, classes = source.reader(folder, split)
    data = ImageDataset.from_uint8(name, images, labels, classes or source.classes)
    full = source.sizes[split]
    note = "" if len(data) >= full else f" (partial: the full {split} split has {full})"
    line = f"{name} {split}: {len(data)} images found in {folder}{note}"
    if line not in _ANNOUNCED:  # once per process: audits that train many federations load it each time
        _ANNOUNCED.add(line)
        log.info(line)
    return data
