"""Membership audits, end to end: they train targets and shadows, run federations and write run folders.

* :class:`MIAConfig` (``config.py``): the black-box audit's settings, its defense nested.
* :func:`run_mia` (``central.py``): black-box audit of a centrally trained target.
* :func:`run_federation_mia` (``federation.py``): black-box audit of a Flower federation's global model.
* :func:`run_federated_mia` (``server_side.py``): the curious server's audit of captured updates.
"""

from experiments.membership.central import run_mia
from experiments.membership.config import MIAConfig
from experiments.membership.federation import run_federation_mia
from experiments.membership.server_side import FederatedMIAConfig, run_federated_mia

__all__ = ["FederatedMIAConfig", "MIAConfig", "run_federated_mia", "run_federation_mia", "run_mia"]
