"""Experiment grids: scenario files, cell expansion, the resumable runner."""

from experiments.grid.cells import Cell, cell_key, expand
from experiments.grid.kinds import CELL_KINDS, CellKind, CellSpec
from experiments.grid.scenario import Scenario, load_scenario, parse_scenario, shipped_scenarios
from experiments.grid.scheduler import RunOptions, RunSummary, run_grid, run_scenario

__all__ = [
    "CELL_KINDS",
    "Cell",
    "CellKind",
    "CellSpec",
    "RunOptions",
    "RunSummary",
    "Scenario",
    "cell_key",
    "expand",
    "load_scenario",
    "parse_scenario",
    "run_grid",
    "run_scenario",
    "shipped_scenarios",
]
