"""Membership audits that need a federation (experiments layer: they run Flower federations)."""

from experiments.membership.federation import run_federation_mia

__all__ = ["run_federation_mia"]
