"""How fedleak states an epsilon: the number, what it protects and against whom, and its delta.

dp-local's epsilon protects one training record of a client; dp-central's a whole client, as seen
in the released models; ldp's a whole client, against the server itself (``fl.privacy_units``).
These are different guarantees, so no figure is shown without its unit, and no table column holds two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fl.privacy_units import PRIVACY_UNITS, unit_label

UNITS = tuple(PRIVACY_UNITS)


def epsilon_text(result: Mapping[str, Any], spec: str = ".2f") -> str:
    """``"0.52 per record (δ=1e-05)"`` from a round record or run result; ``"-"`` without an epsilon."""
    if result.get("epsilon") is None:
        return "-"
    return f"{format(result['epsilon'], spec)} per {unit_label(result['epsilon_unit'])} (δ={result['delta']:g})"


def epsilon_column(result: Mapping[str, Any], unit: str, spec: str = ".2f") -> str:
    """The result's epsilon for a table column of one ``unit`` (``"-"`` when its epsilon has another unit or none)."""
    if result.get("epsilon") is None or result.get("epsilon_unit") != unit:
        return "-"
    return f"{format(result['epsilon'], spec)} (δ={result['delta']:g})"
