"""The result store: one embedded SQLite database per experiment run (``runs/NAME/results.sqlite``).

One row per cell in ``cells`` (its resolved config as JSON, seed, status, timings, versions,
device, error) and its numbers in ``metrics`` (long format: one row per cell, attack and
metric), written in one transaction per cell, in WAL mode so readers (``fedleak report``) never
block a running grid. Artifacts (reconstruction grids, ROC scores) live beside the database
in ``cells/<key>/``. The schema is documented in ``docs/experiments.md``; tables and plots are
built only from this store.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl.core.errors import FedleakError

SCHEMA_VERSION = 1
DB_NAME = "results.sqlite"
STATUSES = ("pending", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    key       TEXT PRIMARY KEY,              -- sha256 prefix of kind + resolved config
    kind      TEXT NOT NULL,                 -- inversion | membership | federated | ...
    dataset   TEXT NOT NULL,
    model     TEXT NOT NULL,
    defense   TEXT NOT NULL,                 -- defense family, e.g. none, dropout, dp-local
    setting   TEXT NOT NULL,                 -- its parameters, e.g. "dropout=0.25"
    seed      INTEGER NOT NULL,
    config    TEXT NOT NULL,                 -- JSON of the resolved typed config
    labels    TEXT NOT NULL,                 -- JSON of the defense parameters (numbers)
    status    TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    summary   TEXT,                          -- JSON returned by the cell's entry point
    error     TEXT,
    started   REAL,                          -- unix time
    finished  REAL,
    wall_s    REAL,
    device    TEXT,
    versions  TEXT,                          -- JSON {package: version}
    host      TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    cell    TEXT NOT NULL REFERENCES cells(key) ON DELETE CASCADE,
    attack  TEXT NOT NULL,                   -- '' for cell-level metrics (accuracy, epsilon)
    metric  TEXT NOT NULL,
    value   REAL,                            -- NULL for NaN; +-inf kept as REAL
    PRIMARY KEY (cell, attack, metric)
);
"""


@dataclass(frozen=True)
class CellRecord:
    """One row of ``cells`` with its metrics (``{attack: {metric: value}}``, '' = cell level)."""

    key: str
    kind: str
    dataset: str
    model: str
    defense: str
    setting: str
    seed: int
    config: dict[str, Any]
    labels: dict[str, Any]
    status: str
    summary: dict[str, Any] | None
    error: str | None
    wall_s: float | None
    device: str | None
    versions: dict[str, str] | None
    metrics: dict[str, dict[str, float]]


class ResultStore:
    """SQLite result store; every write is one transaction, so a killed run loses nothing stored."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path / DB_NAME if path.is_dir() or path.suffix == "" else path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._create()
        except sqlite3.DatabaseError as exc:
            raise FedleakError(f"cannot open result store {self.path}: {exc}") from None

    def _create(self) -> None:
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise FedleakError(
                f"result store {self.path} has schema version {row[0]}, this fedleak reads {SCHEMA_VERSION}"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- run-level metadata -------------------------------------------------------------
    def set_meta(self, values: Mapping[str, Any]) -> None:
        """Record run-level facts (scenario name and source, versions) as JSON values."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
            )

    def meta(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM meta WHERE key != 'schema_version'").fetchall()
        return {k: json.loads(v) for k, v in rows}

    # -- cells --------------------------------------------------------------------------
    def add_cells(self, cells: Iterable[Any]) -> None:
        """Register cells as pending; cells already present (any status) are left untouched."""
        rows = [
            (
                c.key,
                c.kind,
                c.dataset,
                c.model,
                c.defense,
                c.setting,
                c.seed,
                json.dumps(c.config, sort_keys=True),
                json.dumps(c.labels, sort_keys=True),
            )
            for c in cells
        ]
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO cells (key, kind, dataset, model, defense, setting, seed, config,"
                " labels, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                rows,
            )

    def done_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM cells WHERE status = 'done'")}

    def mark_running(self, key: str, *, device: str, host: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE cells SET status = 'running', started = ?, device = ?, host = ?, error = NULL WHERE key = ?",
                (time.time(), device, host, key),
            )

    def record_done(
        self,
        key: str,
        *,
        summary: Mapping[str, Any],
        metrics: Mapping[str, Mapping[str, float]],
        wall_s: float,
        device: str,
        versions: Mapping[str, str],
        host: str,
    ) -> None:
        """Store a finished cell and its metrics in one transaction."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM metrics WHERE cell = ?", (key,))
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [(key, attack, name, _real(v)) for attack, ms in metrics.items() for name, v in ms.items()],
            )
            db.execute(
                "UPDATE cells SET status = 'done', summary = ?, error = NULL, finished = ?, wall_s = ?,"
                " started = COALESCE(started, ?), device = ?, versions = ?, host = ? WHERE key = ?",
                (
                    json.dumps(summary, sort_keys=True, default=str),
                    now,
                    wall_s,
                    now - wall_s,
                    device,
                    json.dumps(dict(versions), sort_keys=True),
                    host,
                    key,
                ),
            )

    def record_failed(self, key: str, *, error: str, wall_s: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE cells SET status = 'failed', error = ?, finished = ?, wall_s = ? WHERE key = ?",
                (error, time.time(), wall_s, key),
            )

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        out.update(dict(self._db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall()))
        return out

    def records(self, *, status: str | None = "done") -> list[CellRecord]:
        """All cells (with ``status``, or every cell for ``None``) and their metrics, in insertion order."""
        query = "SELECT * FROM cells" + (" WHERE status = ?" if status else "") + " ORDER BY rowid"
        self._db.row_factory = sqlite3.Row
        try:
            rows = self._db.execute(query, (status,) if status else ()).fetchall()
            metric_rows = self._db.execute("SELECT cell, attack, metric, value FROM metrics").fetchall()
        finally:
            self._db.row_factory = None
        by_cell: dict[str, dict[str, dict[str, float]]] = {}
        for m in metric_rows:
            value = math.nan if m["value"] is None else float(m["value"])
            by_cell.setdefault(m["cell"], {}).setdefault(m["attack"], {})[m["metric"]] = value
        return [
            CellRecord(
                key=r["key"],
                kind=r["kind"],
                dataset=r["dataset"],
                model=r["model"],
                defense=r["defense"],
                setting=r["setting"],
                seed=r["seed"],
                config=json.loads(r["config"]),
                labels=json.loads(r["labels"]),
                status=r["status"],
                summary=json.loads(r["summary"]) if r["summary"] else None,
                error=r["error"],
                wall_s=r["wall_s"],
                device=r["device"],
                versions=json.loads(r["versions"]) if r["versions"] else None,
                metrics=by_cell.get(r["key"], {}),
            )
            for r in rows
        ]


def _real(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
