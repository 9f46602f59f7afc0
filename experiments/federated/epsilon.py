"""How fedleak states an epsilon: the number, what it protects and against whom, and its delta.

dp-local's epsilon protects one training record of a client; dp-central's a whole client, as seen
in the released models; ldp's a whole client, against the server itself (``fl.privacy_units``).
These are different guarantees, so no figure is shown without its unit, and no table column holds two.
"""

from __future__ import annotations

from fl.privacy_units import PRIVACY_UNITS, unit_label

UNITS = tuple(PRIVACY_UNITS)


def epsilon_text(epsilon: float | None, unit: str | None, delta: float | None, spec: str = ".2f") -> str:
    """``"0.52 per record (δ=1e-05)"``; ``"-"`` without an epsilon."""
    if epsilon is None or unit is None or delta is None:
        return "-"
    return f"{format(epsilon, spec)} per {unit_label(unit)} (δ={delta:g})"


def epsilon_column(epsilon: float | None, unit: str | None, delta: float | None, column: str, spec: str = ".2f") -> str:
    """An epsilon for a table ``column`` of one unit (``"-"`` when it has another unit or none)."""
    if epsilon is None or unit != column or delta is None:
        return "-"
    return f"{format(epsilon, spec)} (δ={delta:g})"
