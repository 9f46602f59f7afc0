"""``fedleak datasets``: which datasets exist, where they are read from, how they split among clients."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from experiments.cli.state import get_state
from experiments.report.tables import FORMATS, format_table

if TYPE_CHECKING:
    import numpy as np

MAX_CLASS_COLUMNS = 20  # above this (CIFAR-100) per-client tables show a summary, not every class

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data root (torchvision layout). Default: $FEDLEAK_DATA, else ~/.cache/fedleak/data.",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="md",
    show_default=True,
    help="Table format.",
)


@click.group("datasets")
def datasets() -> None:
    """Datasets by name and their federated partitions."""


@datasets.command("list")
@data_dir_option
@format_option
def list_datasets(data_dir: Path | None, fmt: str) -> None:
    """List the datasets, where each is read from and whether it is there.

    Also shows each dataset's shape, number of classes and full train/test sizes.
    """
    from fl.data import DATASETS, resolve_root

    root = resolve_root(data_dir)
    rows = []
    for name, source in DATASETS.items():
        folder = source.folder_path(Path() if source.bundled else root)
        missing = source.missing(root)
        status = "bundled" if source.bundled else "present" if not missing else f"missing {len(missing)} files"
        c, h, w = source.shape
        sizes = f"{source.sizes['train']} / {source.sizes['test']}"
        rows.append([name, f"{c}x{h}x{w}", len(source.classes), sizes, str(folder), status])
    header = ["dataset", "shape", "classes", "train / test (full)", "folder", "status"]
    click.echo(format_table(header, rows, fmt))


@datasets.command("show")
@click.argument("name")
@click.option(
    "--clients",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Number of clients.",
)
@click.option(
    "--partition",
    "scheme",
    type=click.Choice(["iid", "dirichlet", "shards"]),
    default="iid",
    show_default=True,
    help="How samples are dealt to clients.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Dirichlet concentration (dirichlet only; smaller = more label skew).",
)
@click.option(
    "--shards",
    "shards_per_client",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Shards per client (shards only).",
)
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@data_dir_option
@format_option
@click.pass_context
def show(
    ctx: click.Context,
    name: str,
    clients: int,
    scheme: str,
    alpha: float,
    shards_per_client: int,
    split: str,
    data_dir: Path | None,
    fmt: str,
) -> None:
    """Show per-client class counts of dataset NAME under a partition.

    The partition is seeded by the global --seed; the last row holds the totals.
    """
    import numpy as np

    from fl.data import DATASETS, load_dataset, partition

    DATASETS.get(name)  # unknown names fail before any file is touched
    seed = get_state(ctx).seed
    data = load_dataset(name, split=split, root=data_dir)
    parts = partition(
        data.labels,
        clients,
        scheme=scheme,
        alpha=alpha,
        shards_per_client=shards_per_client,
        seed=seed,
    )
    labels = data.labels.numpy()
    counts = np.stack([np.bincount(labels[p], minlength=data.num_classes) for p in parts])
    full = DATASETS.get(name).sizes[split]
    partial = "" if len(data) >= full else f" (partial: the full split has {full})"
    detail = {
        "iid": "",
        "dirichlet": f" alpha={alpha}",
        "shards": f" shards_per_client={shards_per_client}",
    }
    click.echo(
        f"{name} {split}: {len(data)} images found{partial}; {clients} clients, {scheme}{detail[scheme]}, seed {seed}"
    )
    click.echo(format_table(*_client_table(counts, data.classes), fmt))


def _client_table(counts: np.ndarray, classes: tuple[str, ...]) -> tuple[list[str], list[list[object]]]:
    """Rows ``client, n, per-class counts`` (or a summary for many classes) plus a total row."""
    totals = counts.sum(axis=0)
    if len(classes) <= MAX_CLASS_COLUMNS:
        header = ["client", "n", *classes]
        rows: list[list[object]] = [[i, int(c.sum()), *map(int, c)] for i, c in enumerate(counts)]
        rows.append(["total", int(totals.sum()), *map(int, totals)])
        return header, rows
    header = ["client", "n", "classes present", "largest class", "largest share"]
    rows = []
    for i, c in enumerate(counts):
        top = int(c.argmax())
        rows.append([i, int(c.sum()), int((c > 0).sum()), classes[top], f"{c[top] / max(c.sum(), 1):.2f}"])
    rows.append(["total", int(totals.sum()), int((totals > 0).sum()), "", ""])
    return header, rows
