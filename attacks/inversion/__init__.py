"""Gradient inversion: what a curious server reconstructs from one client's update.

Public interface (others build on these names):

* :class:`Observation` / :func:`observe_client`: what the server saw for one client in one round.
* :data:`ATTACKS`: ``dlg``, ``idlg``, ``ig``, ``dia``, ``oracle``, ``analytic``, each with a
  frozen config dataclass (:class:`DLGConfig`, :class:`IGConfig`, :class:`DIAConfig`,
  :class:`AnalyticConfig`).
* :func:`invert` (one victim) and :func:`invert_many` (many victims, batched) return
  :class:`InversionResult` (inputs, labels, trace, timings).
* :mod:`~attacks.inversion.metrics`: MSE, PSNR, SSIM, label accuracy, optimal matching.
* :mod:`~attacks.inversion.lpips`: LPIPS (AlexNet, v0.1) from local weight files (:func:`load_lpips`).
"""

from attacks.inversion import analytic, dia, dlg, ig, metrics  # noqa: F401  (registration)
from attacks.inversion.analytic import AnalyticConfig
from attacks.inversion.base import ATTACKS, InversionResult, attack_config, invert, invert_many
from attacks.inversion.dia import DIAConfig
from attacks.inversion.dlg import DLGConfig
from attacks.inversion.ig import IGConfig
from attacks.inversion.labels import recover_labels
from attacks.inversion.observation import UPDATE_KINDS, Observation, observe_client

__all__ = [
    "ATTACKS",
    "UPDATE_KINDS",
    "AnalyticConfig",
    "DIAConfig",
    "DLGConfig",
    "IGConfig",
    "InversionResult",
    "Observation",
    "attack_config",
    "invert",
    "invert_many",
    "metrics",
    "observe_client",
    "recover_labels",
]
