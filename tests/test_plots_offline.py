"""`dvc plots show` works offline: the project's HTML template (resources/plots/offline.html) bundles vega.

In a real browser with every network request refused, each plot of dvc.yaml is drawn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def test_dvc_plots_show_draws_every_plot_without_network(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    subprocess.run([Path(sys.executable).parent / "dvc", "plots", "show", "-o", str(tmp_path)], cwd=ROOT, env=env,
                   check=True, capture_output=True, text=True)
    page_html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" not in page_html
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    plots = [p for stage in dvc_yaml["stages"].values() for p in stage.get("plots", [])] + dvc_yaml.get("plots", [])
    refused: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.route("http*://**", lambda route: (refused.append(route.request.url), route.abort()))
            page.goto((tmp_path / "index.html").as_uri())
            drawn = page.locator(".vega-embed .marks")  # the chart itself (svg or canvas), not the menu icon
            drawn.nth(len(plots) - 1).wait_for(state="attached", timeout=60_000)  # lead_time may be empty: a 0x0 chart
            assert drawn.count() == len(plots)
            page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        finally:
            browser.close()
    assert refused == []
