"""Run a grid: skip cells already stored, run the rest (inline, in processes, or on Ray), store each at once.

Resuming is the default: a cell whose key is ``done`` in the store is never recomputed, so a
killed run loses at most the cells in flight. Cells of kinds with ``shared_engine`` (the
federation) run one after another in one long-lived process, so they share one Ray
instance instead of paying the engine's start-up per cell.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from experiments.grid.cells import Cell, expand
from experiments.grid.kinds.base import CellKind
from experiments.grid.one_cell import CellOutcome, execute_cell, init_engine_worker, init_worker
from experiments.grid.scenario import Scenario
from experiments.store import ResultStore
from fl.core.errors import ConfigError
from fl.core.registry import Registry
from fl.core.runs import init_run_dir, package_versions

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RunOptions:
    """How to run a grid (the ``fedleak compare`` options)."""

    jobs: int = 1  # cells run at once; >1 uses worker processes (local) or Ray tasks
    executor: str = "local"  # "local" (this machine) or "ray" (an existing Ray cluster)
    address: str | None = None  # Ray cluster address for executor="ray" (e.g. "auto", "ray://host:10001")
    device: str = "cpu"  # torch device every cell runs on
    data_root: str | None = None  # dataset folder passed to each cell (None: $FEDLEAK_DATA / cache)
    progress: bool = True  # progress bars (cells done, ETA; each cell's own) when stderr is a terminal

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"jobs={self.jobs} is invalid; expected an integer >= 1")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; valid choices: {', '.join(EXECUTORS)}")
        if self.executor == "ray" and not self.address:
            raise ConfigError("executor 'ray' needs --address of a running Ray cluster (e.g. auto)")


@dataclass(frozen=True)
class RunSummary:
    """Counts after a grid run."""

    total: int
    skipped: int  # already done before this run
    done: int  # finished by this run
    failed: int
    wall_s: float


def run_grid(
    cells: Sequence[Cell],
    out: str | Path,
    *,
    kinds: Registry[CellKind],
    options: RunOptions,
    on_outcome: Callable[[Cell, CellOutcome], None] | None = None,
) -> RunSummary:
    """Run every cell of ``cells`` not yet done in ``out``'s store."""
    start = time.perf_counter()
    out = Path(out)
    store = ResultStore(out)
    try:
        store.add_cells(cells)
        done_before = store.done_keys()
        todo = [c for c in cells if c.key not in done_before]
        # shared-engine cells last and together, so one engine serves all of them
        todo.sort(key=lambda c: kinds.get(c.kind).shared_engine)
        counts = {"done": 0, "failed": 0}
        show = options.progress and sys.stderr.isatty()
        if show != options.progress:
            options = dataclasses.replace(options, progress=show)
        bar = tqdm(
            total=len(cells),
            initial=len(cells) - len(todo),
            unit="cell",
            desc="cells",
            disable=not show,
            dynamic_ncols=True,
        )

        def finish(cell: Cell, outcome: CellOutcome) -> None:
            if outcome.ok:
                store.record_done(
                    cell.key,
                    summary=outcome.summary,
                    metrics=outcome.metrics,
                    wall_s=outcome.wall_s,
                    device=outcome.device,
                    versions=outcome.versions,
                    host=outcome.host,
                )
                counts["done"] += 1
            else:
                store.record_failed(cell.key, error=outcome.error, wall_s=outcome.wall_s)
                counts["failed"] += 1
                bar.write(
                    f"cell {cell.key} ({cell.kind} {cell.dataset} {cell.model} {cell.defense}"
                    f" {cell.setting} seed {cell.seed}) failed: {outcome.error}"
                )
            bar.update(1)
            bar.set_postfix_str(f"failed {counts['failed']}" if counts["failed"] else "")
            if on_outcome is not None:
                on_outcome(cell, outcome)

        try:
            if options.executor == "local" and options.jobs == 1:
                _run_inline(todo, out, kinds, options, store, finish)
            else:
                _run_pooled(todo, out, kinds, options, store, finish)
        finally:
            bar.close()
        return RunSummary(
            total=len(cells),
            skipped=len(cells) - len(todo),
            done=counts["done"],
            failed=counts["failed"],
            wall_s=time.perf_counter() - start,
        )
    finally:
        store.close()


def run_scenario(
    scenario: Scenario, out: str | Path, *, kinds: Registry[CellKind], options: RunOptions, seed: int = 0
) -> RunSummary:
    """Expand ``scenario``, record it (store meta, ``config.json``, ``env.json``) and run its cells."""
    cells = expand(scenario, kinds=kinds)
    for cell in cells:
        try:
            kinds.get(cell.kind).check_data(cell.typed, options.data_root)
        except ConfigError as err:
            raise ConfigError(
                f"{cell.kind} cell {cell.dataset}/{cell.model} ({cell.defense}"
                f"{' ' + cell.setting if cell.setting != '-' else ''}): {err}"
            ) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(out) as store:
        previous = store.meta().get("scenario_name")
        if previous is not None and previous != scenario.name:
            raise ConfigError(
                f"{str(out)!r} holds results of scenario {previous!r}, not {scenario.name!r}; choose another --out"
            )
        store.set_meta(
            {
                "scenario_name": scenario.name,
                "scenario_description": scenario.description,
                "scenario_origin": scenario.origin,
                "scenario_source": scenario.source,
                "device": options.device,
                "versions": package_versions(),
                "cell_keys": [c.key for c in cells],
            }
        )
    init_run_dir(
        out,
        config={"scenario": scenario.origin, "options": options, "cells": len(cells)},
        seed=seed,
        device=options.device,
    )
    return run_grid(cells, out, kinds=kinds, options=options)


def cell_dir(out: Path, cell: Cell) -> Path:
    """Where a cell's artifacts live: ``out/cells/<key>/``."""
    return out / "cells" / cell.key


def _run_inline(
    todo: Sequence[Cell],
    out: Path,
    kinds: Registry[CellKind],
    options: RunOptions,
    store: ResultStore,
    finish: Callable[[Cell, CellOutcome], None],
) -> None:
    import socket

    with contextlib.ExitStack() as engines:
        entered: set[str] = set()
        for cell in todo:
            kind = kinds.get(cell.kind)
            if kind.shared_engine and kind.name not in entered:  # one engine for all such cells
                engines.enter_context(kind.engine())
                entered.add(kind.name)
            store.mark_running(cell.key, device=options.device, host=socket.gethostname())
            outcome = execute_cell(
                kind,
                cell.key,
                cell.typed,
                cell.attacks,
                device=options.device,
                data_root=options.data_root,
                out_dir=str(cell_dir(out, cell)),
                progress=options.progress,
            )
            finish(cell, outcome)


def _run_pooled(
    todo: Sequence[Cell],
    out: Path,
    kinds: Registry[CellKind],
    options: RunOptions,
    store: ResultStore,
    finish: Callable[[Cell, CellOutcome], None],
) -> None:
    import socket

    threads = max(1, (os.cpu_count() or 1) // options.jobs)
    shared = list({c.kind: kinds.get(c.kind) for c in todo if kinds.get(c.kind).shared_engine}.values())
    pools = _RayPools(options, threads, shared) if options.executor == "ray" else _LocalPools(options, threads, shared)
    futures: dict[cf.Future[CellOutcome], Cell] = {}
    try:
        for cell in todo:
            kind = kinds.get(cell.kind)
            store.mark_running(cell.key, device=options.device, host=socket.gethostname())
            futures[pools.submit(kind, cell, str(cell_dir(out, cell)))] = cell
        for future in cf.as_completed(futures):
            cell = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker itself died (out of memory, killed): store it, go on
                outcome = CellOutcome(
                    key=cell.key,
                    ok=False,
                    summary={},
                    metrics={},
                    wall_s=0.0,
                    device=options.device,
                    versions={},
                    host="",
                    error=f"worker failed: {type(exc).__name__}: {exc}".splitlines()[0],
                )
            finish(cell, outcome)
    finally:
        for future in futures:
            future.cancel()
        pools.close()


class _LocalPools:
    """Worker processes: ``jobs`` for ordinary cells, one long-lived process for shared-engine cells."""

    def __init__(self, options: RunOptions, threads: int, shared: list[CellKind]) -> None:
        self.options = options
        ctx = multiprocessing.get_context("spawn")
        self.cells = cf.ProcessPoolExecutor(options.jobs, mp_context=ctx, initializer=init_worker, initargs=(threads,))
        self.engine = cf.ProcessPoolExecutor(
            1, mp_context=ctx, initializer=init_engine_worker, initargs=(threads, shared)
        )

    def submit(self, kind: CellKind, cell: Cell, out_dir: str) -> cf.Future[CellOutcome]:
        pool = self.engine if kind.shared_engine else self.cells
        return pool.submit(
            execute_cell,
            kind,
            cell.key,
            cell.typed,
            cell.attacks,
            device=self.options.device,
            data_root=self.options.data_root,
            out_dir=out_dir,
            progress=False,
        )

    def close(self) -> None:
        self.cells.shutdown(wait=True, cancel_futures=True)
        self.engine.shutdown(wait=True, cancel_futures=True)


class _RayPools:
    """Ray tasks on an existing cluster; shared-engine cells go to one actor, one after another."""

    def __init__(self, options: RunOptions, threads: int, shared: list[CellKind]) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("executor 'ray' needs Ray: pip install 'fedleak' with flwr[simulation]") from None
        self.ray = ray
        self.options = options
        ray.init(address=options.address, ignore_reinit_error=True, log_to_driver=False)
        self.task = ray.remote(num_cpus=threads)(execute_cell)
        self.actor_cls = ray.remote(num_cpus=threads)(_EngineActor)
        self.actor = None
        self.shared = shared

    def submit(self, kind: CellKind, cell: Cell, out_dir: str) -> cf.Future[CellOutcome]:
        args = (kind, cell.key, cell.typed, cell.attacks)
        kwargs = {
            "device": self.options.device,
            "data_root": self.options.data_root,
            "out_dir": out_dir,
            "progress": False,
        }
        if kind.shared_engine:
            if self.actor is None:
                self.actor = self.actor_cls.remote(self.shared)
            return self.actor.run.remote(*args, **kwargs).future()
        return self.task.remote(*args, **kwargs).future()

    def close(self) -> None:
        if self.actor is not None:
            self.ray.kill(self.actor)


class _EngineActor:
    """A long-lived Ray actor that runs shared-engine cells in one process, inside their engines."""

    def __init__(self, shared: list[CellKind]) -> None:
        init_engine_worker(0, shared)

    def run(self, *args: object, **kwargs: object) -> CellOutcome:
        return execute_cell(*args, **kwargs)  # type: ignore[arg-type]
