"""``fedleak report RUN_DIR --format md|csv|latex|html``: tables, figures and an HTML page from the store."""

from __future__ import annotations

from pathlib import Path

import click

from fl.core.runs import atomic_write_text


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "latex", "html"]),
    default="md",
    show_default=True,
    help="Text tables on stdout (md, csv, latex) or one self-contained HTML file.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead (html default: RUN_DIR/report.html).",
)
def report(run_dir: Path, fmt: str, output: Path | None) -> None:
    """Aggregate RUN_DIR's results over seeds: which defense stops which attack, at what cost."""
    from experiments.report import html_report, open_run, text_report, write_figures

    view = open_run(run_dir)
    if fmt == "html":
        path = output or run_dir / "report.html"
        atomic_write_text(path, html_report(view))
        click.echo(f"report: {path}")
        return
    write_figures(view)
    text = text_report(view, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        click.echo(f"report: {output}")
