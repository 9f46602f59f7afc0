"""Gradient-inversion experiments: honest clients compute updates on real images, attacks rebuild them,
the run folder keeps the scores, grids and configs (``fedleak invert``)."""

from experiments.inversion.laboratory import InversionConfig, run_inversion

__all__ = ["InversionConfig", "run_inversion"]
