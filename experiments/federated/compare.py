"""Utility cost of a defense: its final accuracy next to the undefended run with the same seed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.federated.epsilon import UNITS, epsilon_column
from experiments.federated.results import FederationResult
from experiments.report.tables import format_table
from fl.privacy_units import unit_label

HEADER = [
    "defense",
    "final acc",
    "Δ acc vs none",
    *(f"ε per {unit_label(unit)}" for unit in UNITS),
    "PSNR first round",
    "PSNR last round",
]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def compare_rows(results: Mapping[str, FederationResult]) -> list[list[str]]:
    """One row per defense (results keyed by defense name; ``none`` is the reference)."""
    base = results["none"].final_accuracy if "none" in results else None
    rows = []
    for name, res in results.items():
        acc = res.final_accuracy
        psnr = res.attack_psnr
        rounds = sorted(psnr)
        rows.append(
            [
                name,
                _fmt(acc, ".4f"),
                _fmt(acc - base if acc is not None and base is not None else None, "+.4f"),
                *(epsilon_column(res.epsilon, res.epsilon_unit, res.delta, unit) for unit in UNITS),
                _fmt(psnr[rounds[0]] if rounds else None, ".1f"),
                _fmt(psnr[rounds[-1]] if rounds else None, ".1f"),
            ]
        )
    return rows


def compare_table(results: Mapping[str, FederationResult], fmt: str = "md") -> str:
    return format_table(HEADER, compare_rows(results), fmt)
