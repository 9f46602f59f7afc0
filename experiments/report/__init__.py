"""Reports built only from the result store: tables per question, figures, one HTML page."""

from experiments.report.aggregate import Group, Stat, aggregate
from experiments.report.build import (
    RunView,
    figures,
    html_report,
    open_run,
    text_report,
    write_figures,
)
from experiments.report.questions import Table, all_tables

__all__ = [
    "Group",
    "RunView",
    "Stat",
    "Table",
    "aggregate",
    "all_tables",
    "figures",
    "html_report",
    "open_run",
    "text_report",
    "write_figures",
]
