"""Screenshots of a report.html as headless Chromium renders it (for the docs).

    python benchmarks/report_screenshots.py RUN/report.html --out docs/figures

Writes ``report-summary.png`` (the cohort summary down to the estimate-against-label plot) and
``report-cores.png`` (the cores' table after one click on its TPS header: sorted ascending). Needs
playwright (the test extra) and a Chromium (``MASKLLP_CHROMIUM`` or ``chromium`` on the PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    browser_path = os.environ.get("MASKLLP_CHROMIUM") or shutil.which("chromium")
    if browser_path is None:
        raise SystemExit("no Chromium: install it (Debian: apt-get install chromium) or set MASKLLP_CHROMIUM")
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(args.report.resolve().as_uri())
        page.locator("#cores th", has_text="TPS").first.click()
        if page.locator("#scatter").count():
            page.locator("#scatter").scroll_into_view_if_needed()
        page.screenshot(path=str(args.out / "report-summary.png"))
        page.evaluate("document.querySelector('#cores').scrollIntoView()")
        page.screenshot(path=str(args.out / "report-cores.png"))
        browser.close()
    print(f"wrote {args.out / 'report-summary.png'} and {args.out / 'report-cores.png'}")


if __name__ == "__main__":
    main()
