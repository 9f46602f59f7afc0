"""The SQLite result store: documented schema, WAL, one transaction per cell, round trips."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.grid import expand, parse_scenario
from experiments.store import SCHEMA_VERSION, ResultStore

CELL_COLUMNS = [
    "key",
    "kind",
    "dataset",
    "model",
    "defense",
    "setting",
    "seed",
    "config",
    "labels",
    "status",
    "summary",
    "error",
    "started",
    "finished",
    "wall_s",
    "device",
    "versions",
    "host",
]


def test_schema_matches_the_documented_columns(tmp_path: Path) -> None:
    ResultStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "results.sqlite")
    assert [r[1] for r in db.execute("PRAGMA table_info(cells)")] == CELL_COLUMNS
    assert [r[1] for r in db.execute("PRAGMA table_info(metrics)")] == ["cell", "attack", "metric", "value"]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    doc = (Path(__file__).parents[2] / "docs" / "experiments.md").read_text()
    for column in CELL_COLUMNS:
        assert f"`{column}`" in doc


def test_cells_round_trip_with_metrics_inf_and_nan(tmp_path: Path) -> None:
    kinds = toy_kinds()
    cells = expand(parse_scenario(TOY_SCENARIO, kinds=kinds.names()), kinds=kinds)
    with ResultStore(tmp_path) as store:
        store.add_cells(cells)
        store.add_cells(cells)  # idempotent
        assert store.counts() == {"pending": 6, "running": 0, "done": 0, "failed": 0}
        store.mark_running(cells[0].key, device="cpu", host="h")
        store.record_done(
            cells[0].key,
            summary={"epsilon": "inf"},
            metrics={"": {"epsilon": math.inf, "x": math.nan}, "ig": {"psnr_mean": 31.5}},
            wall_s=1.5,
            device="cpu",
            versions={"torch": "2"},
            host="h",
        )
        store.set_meta({"scenario_name": "toy"})
    with ResultStore(tmp_path) as store:
        (rec,) = store.records()
        assert rec.key == cells[0].key and rec.status == "done" and rec.seed == 0
        assert rec.config == cells[0].config and rec.config["iters"] == 5
        assert rec.metrics["ig"] == {"psnr_mean": 31.5}
        assert math.isinf(rec.metrics[""]["epsilon"]) and math.isnan(rec.metrics[""]["x"])
        assert rec.versions == {"torch": "2"} and rec.wall_s == 1.5
        assert store.meta() == {"scenario_name": "toy"}
        assert store.done_keys() == {cells[0].key}
