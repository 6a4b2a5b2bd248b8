"""The cohort report: its estimate-against-label plot by hand, and the page as a browser renders it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from maskllp.intervals import PAPER_FIVE
from maskllp.predictions import PredictionRow
from maskllp.report.cohort_report import cohort_report_html


def _row(name: str, proportion: float | None, label: str) -> PredictionRow:
    interval = None if proportion is None else PAPER_FIVE.names[int(PAPER_FIVE.index_of(proportion))]
    return PredictionRow(name, f"{name}.png", "ours", proportion, interval, "masked ratio", label=label)


def test_the_scatter_shows_each_labelled_core_in_its_column_coloured_by_agreement() -> None:
    rows = [_row("a", 0.004, "0-1%"), _row("b", 0.6, "1-25%"), _row("c", None, "50-75%"),
            _row("d", 0.3, "")]  # d has no label: not in the plot
    page = cohort_report_html(rows, PAPER_FIVE, "model")
    svg = page[page.index('<svg id="scatter"'): page.index("</svg>")]
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="3" fill="(#\w+)"', svg)
    assert [d[2] for d in dots] == ["#2b6a2b", "#b5523b"]  # a agrees (green), b does not (red)
    (xa, ya, _), (xb, yb, _) = [(float(x), float(y), c) for x, y, c in dots]
    assert xa < xb  # '0-1 %' is the first column, '1-25 %' the second
    # square-root scale: 0.4 % and 60 % lie at sqrt(0.004) and sqrt(0.6) of the height from the bottom
    bottom, top = 320 - 44, 10
    assert (bottom - ya) / (bottom - top) == pytest.approx(np.sqrt(0.004), abs=1e-3)
    assert (bottom - yb) / (bottom - top) == pytest.approx(np.sqrt(0.6), abs=1e-3)
    assert "1 undefined" in svg and "<title>a: 0.4 %, label 0-1%</title>" in svg


def test_each_core_shows_its_clinical_tier() -> None:
    from maskllp.report.cohort_report import clinical_tier

    assert [clinical_tier(p) for p in (None, 0.0, 0.0099, 0.01, 0.499, 0.5, 1.0)] == [
        "-", "< 1 %", "< 1 %", "1-49 %", "1-49 %", ">= 50 %", ">= 50 %"]
    page = cohort_report_html([_row("a", 0.6, "")], PAPER_FIVE, "model")
    assert "<th onclick=\"sortBy(this)\" title=\"sort\">clinical tier</th>" in page
    assert '<td data-key="0.600000">&gt;= 50 %</td>' in page


def test_without_labels_there_is_no_scatter() -> None:
    assert "<svg" not in cohort_report_html([_row("a", 0.2, "")], PAPER_FIVE, "model")


def _chromium() -> str | None:
    return os.environ.get("MASKLLP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_report_in_a_real_browser(tmp_path, cohort_csv, stage1_dir, random_model) -> None:
    """Headless Chromium opens report.html of a labelled prediction run: every image loads, every
    link points at a file that exists, nothing is requested outside the folder, and clicking the TPS
    header sorts the cores (ascending, then descending, undefined last), as does the review header
    (flagged cores first, then last)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                     "(pip install -e '.[test]')")
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium; or set MASKLLP_CHROMIUM)")
    from maskllp.config import Config
    from maskllp.inference.pipeline import PredictRun, predict_cores

    config = Config()
    config.trainer.progress_bar = False
    out = tmp_path / "run"
    predict_cores(PredictRun(random_model(tmp_path, stage1_dir), [cohort_csv], out), config)
    report = out / "report.html"
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        n_cores = page.eval_on_selector_all("#cores tbody tr", "rows => rows.length")

        def tps_keys() -> list[str]:
            return page.eval_on_selector_all("#cores tbody tr",
                                             "rows => rows.map(r => r.children[2].dataset.key)")

        header = page.locator("#cores th", has_text=re.compile(r"^TPS$"))
        header.click()
        ascending = tps_keys()
        header.click()
        descending = tps_keys()
        review_column = page.eval_on_selector_all(
            "#cores th", "hs => hs.findIndex(h => h.textContent.trim() === 'review')")
        review = page.locator("#cores th", has_text=re.compile(r"^review$"))

        def review_keys() -> list[str]:
            return page.eval_on_selector_all(
                "#cores tbody tr", f"rows => rows.map(r => r.children[{review_column}].dataset.key)")

        review.click()
        by_review = review_keys()
        review.click()
        by_review_down = review_keys()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert not errors
    assert n_cores == 12 and len(images) == 12 and all(done and width > 0 for done, width in images)
    assert links and all(Path(unquote(urlparse(u).path)).is_file() for u in links)
    assert all(u.startswith(("file://", "data:")) for u in requests)  # works offline, asks no server
    defined = [float(k) for k in ascending if k]
    assert defined == sorted(defined) and len(defined) == 12
    assert [float(k) for k in descending if k] == sorted(defined, reverse=True)
    assert review_column > 0 and len(by_review) == 12
    assert by_review == sorted(by_review)  # flagged cores ("0<flags>") before the others ("1")
    assert by_review_down == sorted(by_review, reverse=True) and len(set(by_review)) > 1
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_exact_proportions_give_the_error_and_the_cut_off_agreement_by_hand() -> None:
    rows = [_row("a", 0.004, "0.2 %"), _row("b", 0.30, "60 %"), _row("c", None, "10 %"), _row("d", 0.2, "")]
    for r, truth in zip(rows, (0.002, 0.60, 0.10, None), strict=True):
        r.truth = truth
    page = cohort_report_html(rows, PAPER_FIVE, "model")
    # MAE over a, b: (0.2 + 30) / 2 = 15.1 pp; 1 %: a and b agree, c undefined; 50 %: a agrees only
    assert "Against the exact proportions (3 cores)" in page
    assert "mean absolute error 15.1 pp over the 2 with a TPS" in page
    assert "same side of 1 %: 2 of 3; same side of 50 %: 1 of 3" in page
    assert "exact proportions" not in cohort_report_html(rows[3:], PAPER_FIVE, "model")
