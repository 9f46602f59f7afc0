"""Tables in Markdown, CSV, LaTeX and HTML (shared by every command and the report)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Collection, Sequence

FORMATS = ("md", "csv", "latex", "html")


ZERO_FP_NOTE = "*: fewer than 1/FPR non-members, so the figure is the TPR at zero false positives"


def tpr_label(fpr: float, n_nonmembers: float) -> str:
    """A table header for :func:`tpr_at_fpr`: ``TPR@0.1%``, or ``TPR@0.1%*`` when no false positive
    fits under that FPR (``n_nonmembers x fpr <= 1``; explained by :data:`ZERO_FP_NOTE`)."""
    return f"TPR@{fpr * 100:g}%" + ("*" if n_nonmembers * fpr <= 1 else "")


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    fmt: str = "md",
    *,
    highlight: Collection[tuple[int, int]] = (),
) -> str:
    """Render ``rows`` under ``header`` as ``md`` (GitHub pipe table), ``csv``, ``latex`` (booktabs)
    or ``html``; cells at ``(row, column)`` in ``highlight`` are bold (md, latex) or of class
    ``best`` (html). CSV carries no highlighting."""
    marked = set(highlight)
    cells = [[_cell(v) for v in row] for row in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += [
            "| " + " | ".join(_md(c, (i, j) in marked) for j, c in enumerate(row)) + " |" for i, row in enumerate(cells)
        ]
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
        lines += [
            " & ".join(_tex_bold(c) if (i, j) in marked else _tex(c) for j, c in enumerate(row)) + " \\\\"
            for i, row in enumerate(cells)
        ]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines)
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="best">{html.escape(c)}</td>' if (i, j) in marked else f"<td>{html.escape(c)}</td>"
                for j, c in enumerate(row)
            )
            + "</tr>"
            for i, row in enumerate(cells)
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    raise ValueError(f"unknown table format {fmt!r}; valid choices: {', '.join(FORMATS)}")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _md(text: str, bold: bool) -> str:
    text = text.replace("|", "\\|")
    return f"**{text}**" if bold and text else text


def _tex_bold(text: str) -> str:
    return f"\\textbf{{{_tex(text)}}}" if text else text


def _tex(text: str) -> str:
    for ch in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(ch, "\\" + ch if ch != "\\" else "\\textbackslash{}")
    return text.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")
