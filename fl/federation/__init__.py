"""A Flower federation (Message API) with an honest-but-curious server.

The pieces follow Flower's app template: :mod:`fl.federation.local_training` (training, evaluation),
:mod:`fl.federation.client` (the ClientApp), :mod:`fl.federation.server` (the ServerApp's
round loop with checkpoints), :mod:`fl.federation.curious_strategy` (the recording strategy wrapper),
:mod:`fl.federation.capture` (what it stores) and :mod:`fl.federation.engine` (Ray simulation).
Defenses are passed in duck-typed (``defenses.base.Defense``); ``fl`` never imports them.
"""

from fl.federation.capture import CAPTURE_MODES, CapturedUpdate, CaptureStore, CaptureWriter
from fl.federation.checkpoint import Checkpoint
from fl.federation.settings import ModelSpec, TrainSettings

__all__ = [
    "CAPTURE_MODES",
    "CaptureStore",
    "CaptureWriter",
    "CapturedUpdate",
    "Checkpoint",
    "ModelSpec",
    "TrainSettings",
]
