"""Running one cell (in this process, a worker process or a Ray task) and what it returns."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.grid.kinds.base import CellKind
from fl.core.runs import atomic_write_json, package_versions, to_jsonable


@dataclass(frozen=True)
class CellOutcome:
    """What a finished (or failed) cell reports back to the store."""

    key: str
    ok: bool
    summary: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    wall_s: float
    device: str
    versions: dict[str, str]
    host: str
    error: str = ""


def execute_cell(
    kind: CellKind,
    key: str,
    typed: Any,
    attacks: tuple[str, ...],
    *,
    device: str,
    data_root: str | None,
    out_dir: str,
    progress: bool,
) -> CellOutcome:
    """Run one cell; exceptions (not interrupts) become a failed outcome with a one-line error."""
    host = socket.gethostname()
    start = time.perf_counter()
    dev = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "cell.json", {"kind": kind.name, "key": key, "config": typed})
    try:
        result = kind.run(
            typed, device=dev, data_root=Path(data_root) if data_root else None, out_dir=out, progress=progress
        )
        summary = to_jsonable(result.to_json())
    except Exception as exc:  # a failed cell must not stop the grid; the error is stored
        (out / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return CellOutcome(
            key=key,
            ok=False,
            summary={},
            metrics={},
            wall_s=time.perf_counter() - start,
            device=str(dev),
            versions=package_versions(),
            host=host,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0],
        )
    atomic_write_json(out / "summary.json", summary)
    return CellOutcome(
        key=key,
        ok=True,
        summary=summary,
        metrics=result.rows(),
        wall_s=time.perf_counter() - start,
        device=str(dev),
        versions=package_versions(),
        host=host,
    )


def init_worker(threads: int) -> None:
    """Process-pool initializer: each job gets its share of the CPU threads."""
    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))


_ENGINES = contextlib.ExitStack()


def init_engine_worker(threads: int, kinds: list[CellKind]) -> None:
    """Initializer of the one process that runs shared-engine cells: enter each kind's engine
    for the life of the process (Ray shuts down with it)."""
    if threads:
        init_worker(threads)
    for kind in kinds:
        _ENGINES.enter_context(kind.engine())
