"""The report in a real headless browser: no console errors, no outside requests, every section shown.

Opt-in (`-m browser`, skipped without Debian's `chromium`); `bench/report_browser.py` runs the same check on a
real run folder and saves the screenshot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.report_browser import check_page, find_chromium

from langadapt.report.html import load_run, render_report
from tests.evaluate.constructed import constructed_metrics
from tests.report.test_report import SECTIONS, fake_run, stage_manifests

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(find_chromium() is None, reason="no chromium (apt-get install -y chromium)")]


def test_the_report_renders_cleanly_with_every_section(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    run = fake_run(tmp_path / "run", "browser", stage_manifests(constructed_metrics(tmp_path)))
    page.write_text(render_report(load_run(run)), encoding="utf-8")
    check = check_page(page, SECTIONS)
    assert check.problems == []
    assert check.headings == list(SECTIONS) and check.svgs == 4
    assert check.screenshot.startswith(b"\x89PNG") and check.height > 2000


def test_the_check_sees_console_errors_and_outside_requests(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><head><link rel="stylesheet" href="https://example.invalid/s.css"></head>'
                    "<body><h2>Run</h2><script>console.error('boom'); undefinedFunction();</script></body></html>")
    check = check_page(page, ("Run", "Evaluation"))
    assert "console error: boom" in check.problems
    assert any("undefinedFunction" in p or "Uncaught" in p for p in check.problems)
    assert "outside request: https://example.invalid/s.css" in check.problems
    assert "missing section: Evaluation" in check.problems
