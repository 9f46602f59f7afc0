"""Federated cells of a grid with one shared Ray instance vs one engine start-up per cell (JSON lines).

    .venv/bin/python benchmarks/compare_engine.py --cells 3

Runs the same grid (bundled ``sample`` data, MLP, 2 clients, 1 round, seeds 0..N-1) through
``experiments.grid.run_grid`` twice: ``shared`` is the runner as shipped (every federated cell
inside one ``ray_session``), ``per-cell`` swaps in a kind whose engine is a no-op, so each
``run_federation`` starts and stops Ray itself, as separate ``fedleak simulate`` calls would.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from experiments.grid import RunOptions, expand, parse_scenario, run_grid
from experiments.grid.kinds.base import CellKind
from experiments.grid.kinds.federated import FederatedKind
from fl.core.registry import Registry

SCENARIO = """
[scenario]
name = "engine-bench"
seeds = {seeds}
[federated]
datasets = ["sample"]
models = ["mlp"]
attacks = ["none"]
budget = {{ rounds = 1, clients = 2 }}
options = {{ capture = "none", train = {{ batch_size = 8 }} }}
"""


class PerCellEngine(FederatedKind):
    """The federated kind without the shared engine: each cell pays Ray's start-up."""

    def engine(self) -> AbstractContextManager[None]:
        return nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3)
    args = parser.parse_args()
    text = SCENARIO.format(seeds=list(range(args.cells)))
    for mode, kind in (("per-cell", PerCellEngine()), ("shared", FederatedKind())):
        kinds: Registry[CellKind] = Registry("cell kind")
        kinds.register("federated")(kind)
        cells = expand(parse_scenario(text, kinds=kinds.names()), kinds=kinds)
        with tempfile.TemporaryDirectory() as tmp:
            summary = run_grid(cells, Path(tmp), kinds=kinds, options=RunOptions(progress=False))
        print(
            json.dumps(
                {
                    "bench": "compare_engine",
                    "mode": mode,
                    "cells": summary.total,
                    "done": summary.done,
                    "wall_s": round(summary.wall_s, 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
