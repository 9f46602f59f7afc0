"""The HTML report renders in a real browser (headless Chromium): sections in the DOM, a non-blank page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from grid_doubles import TOY_SCENARIO, toy_kinds

from experiments.grid import RunOptions, parse_scenario
from experiments.grid.scheduler import run_scenario
from experiments.report import html_report, open_run

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    return subprocess.run([BROWSER, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    kinds = toy_kinds()
    run = tmp_path / "run"
    run_scenario(
        parse_scenario(TOY_SCENARIO, kinds=kinds.names()), run, kinds=kinds, options=RunOptions(progress=False)
    )
    page = run / "report.html"
    page.write_text(html_report(open_run(run)))
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    for heading in (
        "fedleak report: toy",
        "Which defense stops which attack",
        "At what utility cost",
        "Figures",
        "Scenario",
        "Environment",
    ):
        assert heading in dom
    assert dom.count("<img") >= 1 and 'class="best"' in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels[..., :3].std() > 0.05  # text, tables and a figure, not a blank page
