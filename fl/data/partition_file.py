"""One client's partition in a file of its own, for a SuperNode that holds only its own data.

On Flower's deployment engine each SuperNode runs on its own host with its own records. The
file carries the client's images (uint8, as the datasets are read), labels, their indices in
the full training split (the ground truth the curious server's attacks are scored against
afterwards), the dataset's name and a digest of how the partitions were dealt, so a node started
with another client's file, or with a file dealt for another run, is refused.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from fl.core.errors import DataError
from fl.core.runs import atomic_write_bytes


def partition_file_name(client: int) -> str:
    return f"client_{client:04d}.npz"


def save_partition_file(
    path: str | Path,
    *,
    dataset: str,
    client: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices: np.ndarray,
    tag: str = "",
) -> None:
    """Write ``client``'s records (images in ``[0, 1]``) to ``path`` atomically; ``tag``: how they were dealt."""
    pixels = torch.round(images * 255.0).clamp_(0, 255).to(torch.uint8).numpy()
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        images=pixels,
        labels=labels.numpy().astype(np.int64),
        indices=np.asarray(indices, np.int64),
        dataset=np.array(dataset),
        client=np.array(client),
        tag=np.array(tag),
    )
    atomic_write_bytes(Path(path), buf.getvalue())


def load_partition_file(
    path: str | Path, *, dataset: str, client: int, tag: str = ""
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, labels, dataset_indices)`` of the node's file; refuses another dataset's or client's
    file, and (``tag`` given) one dealt with other partition settings than the run's."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            found, owner, dealt = str(data["dataset"]), int(data["client"]), str(data["tag"])
            pixels, labels, indices = data["images"], data["labels"], data["indices"]
    except FileNotFoundError:
        raise DataError(f"data-file {str(path)!r} does not exist") from None
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"data-file {str(path)!r} is not a fedleak partition file ({err})") from None
    if found != dataset or owner != client:
        raise DataError(
            f"data-file {str(path)!r} holds client {owner} of {found!r}, "
            f"but this node is client {client} of a {dataset!r} run"
        )
    if tag and dealt != tag:
        raise DataError(
            f"data-file {str(path)!r} was dealt with other partition settings than this run's (dataset, clients, "
            "client-examples, partition, alpha, seed); export it again with the run's options"
        )
    images = torch.from_numpy(pixels.astype(np.float32)).div_(255.0)
    return images, torch.from_numpy(labels), torch.from_numpy(indices)
