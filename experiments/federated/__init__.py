"""Federated experiments: a Flower federation + a defense + a curious server's attacks.

``run_federation(SimulationConfig(...), out_dir=...)`` is the one entry point (CLI, grids,
tests); ``fl.federation.engine.ray_session`` shares one Ray instance across calls.
"""

from experiments.federated.config import SimulationConfig
from experiments.federated.federation import run_federation

__all__ = ["SimulationConfig", "run_federation"]
