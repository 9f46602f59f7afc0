"""``--executor ray``: cells as Ray tasks on a running cluster (here a local one), stored like local runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.grid import RunOptions, expand, parse_scenario, run_grid
from experiments.store import ResultStore
from fl.core.errors import ConfigError


def test_ray_executor_needs_an_address() -> None:
    with pytest.raises(ConfigError, match="executor 'ray' needs --address"):
        RunOptions(executor="ray")


@pytest.mark.slow
def test_ray_executor_runs_every_cell(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    path = os.pathsep.join(sys.path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        kinds = toy_kinds()
        cells = expand(parse_scenario(TOY_SCENARIO, kinds=kinds.names()), kinds=kinds)
        summary = run_grid(
            cells, tmp_path, kinds=kinds, options=RunOptions(executor="ray", address="auto", jobs=2, progress=False)
        )
    finally:
        ray.shutdown()
    assert (summary.done, summary.failed) == (6, 0)
    with ResultStore(tmp_path) as store:
        assert store.counts()["done"] == 6
        assert all(r.metrics["ig"]["psnr_mean"] > 0 for r in store.records())
