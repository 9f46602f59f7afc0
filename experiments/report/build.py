"""Reports from a run's result store: text tables (md, csv, latex) and one self-contained HTML file."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.report import plots
from experiments.report.aggregate import Group, aggregate
from experiments.report.questions import Table, all_tables
from experiments.store import DB_NAME, CellRecord, ResultStore
from fl.core.errors import ConfigError
from fl.core.runs import atomic_write_bytes

TEXT_FORMATS = ("md", "csv", "latex")


@dataclass(frozen=True)
class RunView:
    """Everything a report shows, read once from the store."""

    run_dir: Path
    meta: dict[str, Any]
    counts: dict[str, int]
    records: list[CellRecord]
    failed: list[CellRecord]
    groups: list[Group]
    tables: list[Table]


def open_run(run_dir: str | Path) -> RunView:
    """Read a run folder's store; a folder without one is a usage error."""
    run_dir = Path(run_dir)
    if not (run_dir / DB_NAME).is_file():
        raise ConfigError(f"{str(run_dir)!r} holds no {DB_NAME}; run `fedleak compare SCENARIO --out {run_dir}` first")
    with ResultStore(run_dir) as store:
        records = store.records()
        failed = store.records(status="failed")
        meta, counts = store.meta(), store.counts()
    current = meta.pop("cell_keys", None)
    if current is not None:  # cells of an earlier version of the scenario stay stored, unreported
        keys = set(current)
        records = [r for r in records if r.key in keys]
        failed = [r for r in failed if r.key in keys]
        with ResultStore(run_dir) as store:
            statuses = [r.status for r in store.records(status=None) if r.key in keys]
        counts = {k: statuses.count(k) for k in counts}
    groups = aggregate(records)
    return RunView(
        run_dir=run_dir,
        meta=meta,
        counts=counts,
        records=records,
        failed=failed,
        groups=groups,
        tables=all_tables(groups),
    )


def text_report(view: RunView, fmt: str) -> str:
    """All tables as Markdown (with headings and captions), CSV blocks or LaTeX table floats, then the
    failed cells (if any) as a Markdown list or CSV/LaTeX comment lines."""
    if fmt not in TEXT_FORMATS:
        raise ConfigError(f"unknown text format {fmt!r}; valid choices: {', '.join(TEXT_FORMATS)}")
    failed = _failed_text(view.failed, fmt)
    if not view.tables:
        return "no finished cells yet\n" + (f"\n{failed}\n" if failed else "")
    parts = []
    for t in view.tables:
        if fmt == "md":
            parts.append(f"### {t.title}\n\n{t.caption}\n\n{t.render('md')}")
        elif fmt == "csv":
            parts.append(f"# {t.title}\n{t.render('csv')}")
        else:
            parts.append(
                "\\begin{table}[t]\n\\centering\n\\caption{"
                + t.title
                + ". "
                + t.caption
                + "}\n"
                + t.render("latex")
                + "\n\\end{table}"
            )
    if failed:
        parts.append(failed)
    return "\n\n".join(parts) + "\n"


def _failed_text(failed: Sequence[CellRecord], fmt: str) -> str:
    """Failed cells, one line each (key, kind, the error's first line); empty when none failed."""
    if not failed:
        return ""
    rows = [(r.key, r.kind, ((r.error or "").strip().splitlines() or ["no error recorded"])[0]) for r in failed]
    if fmt == "md":
        return "### Failed cells\n\n" + "\n".join(f"- `{key}` ({kind}): {error}" for key, kind, error in rows)
    mark = "#" if fmt == "csv" else "%"
    return "\n".join([f"{mark} Failed cells", *(f"{mark} {key} ({kind}): {error}" for key, kind, error in rows)])


def figures(view: RunView) -> list[tuple[str, str, bytes]]:
    """(file stem, caption, PNG) of each figure the run supports."""
    out = []
    for stem, caption, png in (
        (
            "privacy_utility",
            "Privacy-utility trade-off: accuracy against the strongest attack's success, one curve per defense family.",
            plots.privacy_utility(view.groups),
        ),
        (
            "psnr_vs_dropout",
            "Gradient-inversion PSNR against the dropout rate: IG is stopped by dropout, "
            "DIA optimizes the masks and is not. At p = 0 there are no masks, so DIA (like the "
            "mask oracle) equals IG there; the grid runs only IG at p = 0, and the DIA line "
            "starts at the smallest p > 0.",
            plots.psnr_vs_dropout(view.groups),
        ),
        (
            "roc",
            "Membership-inference ROC curves of the first seed of each setting (log-log; the dashed diagonal "
            "is chance). Each setting trained "
            "with DP has its (ε, δ)-DP bound on the TPR dotted in its curve's colour; zero rates are drawn "
            "at half the smallest non-zero FPR, where the axes start.",
            plots.roc_curves(view.groups, view.run_dir, view.records),
        ),
    ):
        if png is not None:
            out.append((stem, caption, png))
    return out


def write_figures(view: RunView) -> list[Path]:
    """Write each figure to ``run_dir/plots/<stem>.png``."""
    paths = []
    for stem, _, png in figures(view):
        path = view.run_dir / "plots" / f"{stem}.png"
        atomic_write_bytes(path, png)
        paths.append(path)
    return paths


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0 1.6em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3} td.best{font-weight:bold;background:#dff3e3}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em} .caption{color:#555}
"""


def html_report(view: RunView) -> str:
    """One self-contained HTML page: tables, figures and grids as base64 PNG, scenario and versions."""
    meta = view.meta
    name = html.escape(str(meta.get("scenario_name", view.run_dir.name)))
    body = [f"<h1>fedleak report: {name}</h1>"]
    if meta.get("scenario_description"):
        body.append(f"<p>{html.escape(str(meta['scenario_description']))}</p>")
    counts = ", ".join(f"{v} {k}" for k, v in view.counts.items() if v)
    body.append(
        f"<p class='caption'>Cells: {html.escape(counts or 'none')}. Values are mean ± std over seeds; "
        "highlighted cells mark the best defense per attack (or the best accuracy).</p>"
    )
    privacy = [t for t in view.tables if t.key != "utility"]
    utility = [t for t in view.tables if t.key == "utility"]
    body.append("<h2>Which defense stops which attack</h2>")
    body += _tables_html(privacy) or ["<p>No attack results yet.</p>"]
    body.append("<h2>At what utility cost</h2>")
    body += _tables_html(utility) or ["<p>No accuracy results yet.</p>"]
    body.append("<h2>Figures</h2>")
    body += [_figure(png, caption) for _, caption, png in figures(view)] or ["<p>No figures yet.</p>"]
    grids = plots.reconstruction_grids(view.groups, view.run_dir)
    body.append("<h2>Reconstructions</h2>")
    body += [_figure(path.read_bytes(), caption) for caption, path in grids] or ["<p>No reconstructions.</p>"]
    if view.failed:
        body.append("<h2>Failed cells</h2><ul>")
        body += [
            f"<li>{html.escape(r.kind)} {html.escape(r.dataset)} {html.escape(r.model)} "
            f"{html.escape(r.defense)} {html.escape(r.setting)} seed {r.seed}: "
            f"{html.escape(r.error or '')}</li>"
            for r in view.failed
        ]
        body.append("</ul>")
    body.append("<h2>Scenario</h2>")
    body.append(f"<pre>{html.escape(str(meta.get('scenario_source', '')))}</pre>")
    body.append("<h2>Environment</h2>")
    env = {k: v for k, v in meta.items() if k not in ("scenario_source", "scenario_description")}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_plain(v))}</td></tr>" for k, v in env.items())
    body.append(f"<table>{rows}</table>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>fedleak report: {name}</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def _tables_html(tables: Sequence[Table]) -> list[str]:
    return [
        f"<h3>{html.escape(t.title)}</h3><p class='caption'>{html.escape(t.caption)}</p>{t.render('html')}"
        for t in tables
    ]


def _figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption class='caption'>{html.escape(caption)}</figcaption></figure>"
    )


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)
