"""fedleak's foundation: data, models, run records and the Flower federation.

Imports flow one way: ``experiments`` -> ``attacks``, ``defenses`` -> ``fl``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedleak")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
