"""Gradient-inversion experiments: honest clients compute updates on real images, attacks rebuild them,
the run folder keeps the scores, grids and configs (``fedleak invert``)."""

from experiments.inversion.config import InversionConfig, inversion_config, inversion_schema
from experiments.inversion.laboratory import run_inversion

__all__ = ["InversionConfig", "inversion_config", "inversion_schema", "run_inversion"]
