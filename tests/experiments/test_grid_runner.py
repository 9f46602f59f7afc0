"""Grid expansion, resumable runs (interrupt between cells, rerun), failures, worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from grid_doubles import TOY_SCENARIO, ToyKind, toy_kinds

from experiments.grid import RunOptions, expand, parse_scenario, run_grid
from experiments.store import ResultStore


def _cells(kinds, text: str = TOY_SCENARIO):
    return expand(parse_scenario(text, kinds=kinds.names()), kinds=kinds)


def test_grid_expansion_is_the_product_and_keys_are_stable() -> None:
    kinds = toy_kinds()
    cells = _cells(kinds)
    # (none + 2 dropout settings) x 2 seeds
    assert len(cells) == 6
    assert len({c.key for c in cells}) == 6
    assert sorted({c.setting for c in cells}) == ["-", "dropout=0.25", "dropout=0.5"]
    assert {c.typed.iters for c in cells} == {5}
    assert [c.key for c in _cells(kinds)] == [c.key for c in cells]
    changed = _cells(kinds, TOY_SCENARIO.replace("iterations = 5", "iterations = 6"))
    assert not {c.key for c in changed} & {c.key for c in cells}


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path) -> None:
    kinds = toy_kinds(interrupt_on_call=2)
    cells = _cells(kinds)
    opts = RunOptions(progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_grid(cells, tmp_path, kinds=kinds, options=opts)
    with ResultStore(tmp_path) as store:
        first = store.records()
        assert len(first) == 1 and store.counts()["running"] == 1
    kind = kinds.get("toy")
    assert isinstance(kind, ToyKind)
    kind.interrupt_on_call = 0
    kind.calls = 0
    summary = run_grid(cells, tmp_path, kinds=kinds, options=opts)
    assert (summary.skipped, summary.done, summary.failed) == (1, 5, 0)
    assert kind.calls == 5  # the finished cell was not recomputed
    with ResultStore(tmp_path) as store:
        records = store.records()
        assert len(records) == 6 and store.counts()["done"] == 6
        assert records[0].key == first[0].key and records[0].metrics == first[0].metrics
    for cell in cells:
        assert (tmp_path / "cells" / cell.key / "artifact.json").is_file()
    again = run_grid(cells, tmp_path, kinds=kinds, options=opts)
    assert (again.skipped, again.done) == (6, 0) and kind.calls == 5


def test_failed_cell_is_stored_and_retried(tmp_path: Path) -> None:
    kinds = toy_kinds()
    text = TOY_SCENARIO.replace("budget = { iterations = 5 }", "options = { fail = true }")
    cells = _cells(kinds, text)[:2]
    summary = run_grid(cells, tmp_path, kinds=kinds, options=RunOptions(progress=False))
    assert summary.failed == 2
    with ResultStore(tmp_path) as store:
        failed = store.records(status="failed")
        assert [r.error for r in failed] == ["RuntimeError: toy failure"] * 2
    assert "toy failure" in (tmp_path / "cells" / cells[0].key / "error.txt").read_text()
    rerun = run_grid(cells, tmp_path, kinds=kinds, options=RunOptions(progress=False))
    assert rerun.skipped == 0 and rerun.failed == 2


def test_parallel_jobs_store_the_same_results(tmp_path: Path) -> None:
    kinds = toy_kinds()
    cells = _cells(kinds)
    run_grid(cells, tmp_path / "seq", kinds=kinds, options=RunOptions(progress=False))
    summary = run_grid(cells, tmp_path / "par", kinds=kinds, options=RunOptions(jobs=2, progress=False))
    assert summary.done == 6
    with ResultStore(tmp_path / "seq") as seq, ResultStore(tmp_path / "par") as par:
        a = {r.key: r.metrics for r in seq.records()}
        b = {r.key: r.metrics for r in par.records()}
    assert a == b
