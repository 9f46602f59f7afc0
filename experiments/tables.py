"""Plain-text tables in Markdown, CSV and LaTeX (shared by every command and the report)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

FORMATS = ("md", "csv", "latex")


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], fmt: str = "md") -> str:
    """Render ``rows`` under ``header`` as ``md`` (GitHub pipe table), ``csv`` or ``latex`` (booktabs)."""
    cells = [[_cell(v) for v in row] for row in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(cells)
        return buf.getvalue().rstrip("\n")
    if fmt == "latex":
        lines = [
            "\\begin{tabular}{" + "l" * len(header) + "}",
            "\\toprule",
            " & ".join(_tex(h) for h in header) + " \\\\",
            "\\midrule",
        ]
        lines += [" & ".join(_tex(c) for c in row) + " \\\\" for row in cells]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines)
    raise ValueError(f"unknown table format {fmt!r}; valid choices: {', '.join(FORMATS)}")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _tex(text: str) -> str:
    for ch in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(ch, "\\" + ch if ch != "\\" else "\\textbackslash{}")
    return text.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")
