"""Report tables from the store: aggregation over seeds, best-defense highlighting, formats, HTML."""

from __future__ import annotations

from pathlib import Path

import pytest
from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.grid import RunOptions, expand, parse_scenario, run_grid
from experiments.report import Group, Stat, html_report, open_run, text_report
from experiments.report.questions import AUC, PSNR, Column, build_table, membership_table
from experiments.report.tables import format_table


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    kinds = toy_kinds()
    text = TOY_SCENARIO.replace("[toy]", "[defenses.dp]\nname = 'dp-local'\ntarget_epsilon = [1.0, 8.0]\n\n[toy]")
    text = text.replace('defenses = ["none", "dropout"]', 'defenses = ["none", "dropout", "dp"]')
    run_grid(
        expand(parse_scenario(text, kinds=kinds.names()), kinds=kinds),
        out,
        kinds=kinds,
        options=RunOptions(progress=False),
    )
    return out


def test_stat_text() -> None:
    assert Stat.of([1.0, 3.0]).text(1) == "2.0 ± 1.4"
    assert Stat.of([2.0]).text(2) == "2.00"
    assert Stat.of([]).text() == "-"


def test_format_table_highlights_in_every_format() -> None:
    header, rows = ["a", "b"], [["x", 1.5], ["y|z", 2.0]]
    assert format_table(header, rows, "md", highlight={(0, 1)}).splitlines()[2:] == ["| x | **1.5** |", "| y\\|z | 2 |"]
    assert "\\textbf{1.5}" in format_table(header, rows, "latex", highlight={(0, 1)})
    assert '<td class="best">1.5</td>' in format_table(header, rows, "html", highlight={(0, 1)})
    assert format_table(header, rows, "csv", highlight={(0, 1)}) == "a,b\nx,1.5\ny|z,2"


def test_tables_aggregate_seeds_and_mark_the_best_defense(toy_run: Path) -> None:
    view = open_run(toy_run)
    # 1 none + 2 dropout + 2 dp settings, each over 2 seeds
    assert len(view.groups) == 5 and all(g.seeds == (0, 1) for g in view.groups)
    table = build_table(
        "t",
        "T",
        "",
        view.groups,
        [Column("ig PSNR", PSNR, "ig", lambda v: v, 1), Column("dia AUC", AUC, "dia", lambda v: abs(v - 0.5), 3)],
    )
    settings = [r[3] for r in table.rows]
    assert settings == ["-", "dropout=0.25", "dropout=0.5", "target_epsilon=1.0", "target_epsilon=8.0"]
    # toy PSNR: 30 - 20 p + 0.5 seed -> seeds 0, 1 give mean 30.25 - 20 p, std 0.35
    assert table.rows[2][4] == "20.2 ± 0.4"
    assert table.highlight == {(2, 4), (3, 5)}  # dropout 0.5 stops ig best; eps 1 pulls AUC to 0.6
    md = text_report(view, "md")
    assert "### Which defense stops which attack: gradient inversion" not in md  # toy kind has no question
    assert "### At what utility cost" in md and "**0.900 ± 0.000**" in md
    assert "-0.100" in md  # dropout 0.5 costs 0.1 accuracy
    utility = md[md.index("### At what utility cost") :]
    assert "| Accuracy | Δ vs none | ε per record | δ |" in utility and "ε per client" not in utility
    assert "| 1.00 ± 0.00 | 1e-05 |" in utility and "| 8.00 ± 0.00 | 1e-05 |" in utility
    assert text_report(view, "csv").startswith("# At what utility cost\nDataset,Model,Defense,Setting,Kind")
    assert "\\begin{tabular}" in text_report(view, "latex")


def test_text_reports_list_failed_cells_only_when_there_are_some(tmp_path: Path, toy_run: Path) -> None:
    kinds = toy_kinds()
    ok = expand(parse_scenario(TOY_SCENARIO, kinds=kinds.names()), kinds=kinds)[:1]
    failing = TOY_SCENARIO.replace("budget = { iterations = 5 }", "options = { fail = true }")
    bad = expand(parse_scenario(failing, kinds=kinds.names()), kinds=kinds)[:1]
    run_grid(ok + bad, tmp_path, kinds=kinds, options=RunOptions(progress=False))
    view = open_run(tmp_path)
    key = bad[0].key
    md = text_report(view, "md")
    assert md.index("### At what utility cost") < md.index("### Failed cells")
    assert md.endswith(f"### Failed cells\n\n- `{key}` (toy): RuntimeError: toy failure\n")
    assert text_report(view, "csv").endswith(f"# Failed cells\n# {key} (toy): RuntimeError: toy failure\n")
    assert text_report(view, "latex").endswith(f"% Failed cells\n% {key} (toy): RuntimeError: toy failure\n")
    only_failed = tmp_path / "only_failed"
    run_grid(bad, only_failed, kinds=kinds, options=RunOptions(progress=False))
    assert "no finished cells yet" in text_report(open_run(only_failed), "md")
    assert f"- `{key}` (toy): RuntimeError: toy failure" in text_report(open_run(only_failed), "md")
    for fmt in ("md", "csv", "latex"):
        assert "Failed cells" not in text_report(open_run(toy_run), fmt)


def test_html_report_is_self_contained(toy_run: Path) -> None:
    page = html_report(open_run(toy_run))
    for heading in ("Which defense stops which attack", "At what utility cost", "Figures", "Scenario", "Environment"):
        assert f"<h2>{heading}</h2>" in page
    assert 'class="best"' in page and "data:image/png;base64," in page
    assert "src='http" not in page and 'src="http' not in page


def test_membership_table_warns_about_a_dp_bound_violation() -> None:
    def group(setting: str, violated: float) -> Group:
        metrics = {"lira": {"auc": Stat.of([0.9]), "bound_violated": Stat.of([violated])}}
        return Group(
            kind="membership",
            dataset="d",
            model="m",
            defense="dp",
            setting=setting,
            labels={},
            seeds=(0,),
            keys=(setting,),
            metrics=metrics,
        )

    clean = membership_table([group("target_epsilon=8.0", 0.0)])
    assert clean is not None and "WARNING" not in clean.caption
    flagged = membership_table([group("target_epsilon=8.0", 0.0), group("target_epsilon=1.0", 1.0)])
    assert flagged is not None
    assert "WARNING: lira (d, m, dp target_epsilon=1.0) lies significantly above its DP bound" in flagged.caption
    assert "target_epsilon=8.0" not in flagged.caption
