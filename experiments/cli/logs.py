"""Quiet logs by default: Flower, Ray and Opacus are noisy; ``-v`` brings them back."""

from __future__ import annotations

import logging
import os
import warnings

NOISY_LOGGERS = ("flwr", "ray", "opacus", "filelock", "matplotlib", "PIL")


def configure_logging(verbosity: int) -> None:
    """``verbosity`` -1 (quiet), 0 (default: fedleak INFO, libraries silenced), 1+ (everything)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0" if verbosity > 0 else "1")
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("fedleak").setLevel(level)
    lib_level = logging.DEBUG if verbosity > 0 else logging.ERROR
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(lib_level)
    if verbosity <= 0:
        os.environ.setdefault("RAY_LOG_TO_STDERR", "0")
        os.environ["FLWR_LOG_LEVEL"] = "ERROR"
        warnings.filterwarnings("ignore", module="opacus")
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        # raised by torch for Opacus' hooks, attributed to the caller's module (the training loop)
        warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
