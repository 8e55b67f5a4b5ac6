"""The report in a real browser: headless Chromium renders the HTML written from real rows
(tests/support/report_scene.py) with every network request refused, and the screenshot must be
a real page: the window's size, mostly not background, many colours (charts, swatches and
thumbnails drawn). Skipped with an install hint where Chromium is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import psycopg2.extensions
import pytest
from PIL import Image

from fashionstream.app.report import build_report, render_html
from fashionstream.core.settings import Settings
from tests.support.report_scene import SINCE, UNTIL, write_scene

WIDTH, HEIGHT = 1100, 2400


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("Chromium is not installed: apt-get install -y chromium (Debian)")


def screenshot(page: Path, out: Path, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Render `page` headless; every request outside the file goes to a closed port."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--proxy-server=127.0.0.1:9",  # nothing listens there: any fetch would fail
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={out.parent / 'chromium-profile'}",
        f"--screenshot={out}",
        f"--window-size={width},{height}",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), f"no screenshot; chromium said:\n{done.stderr[-2000:]}"
    return np.asarray(Image.open(out).convert("RGB"))


def test_the_report_renders_as_a_real_page_with_no_network(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    write_scene(local_stack)
    page = tmp_path / "report.html"
    html = render_html(build_report(local_stack.database_url, SINCE, UNTIL))
    page.write_text(html, encoding="utf-8")
    # the page asks for nothing: no http(s)/protocol-relative src, href, or CSS url()
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.IGNORECASE)
    assert "@import" not in html

    pixels = screenshot(page, tmp_path / "report.png")
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    background = np.array([0xF6, 0xF7, 0xF9])
    drawn = np.any(np.abs(pixels.astype(int) - background) > 8, axis=2).mean()
    assert drawn > 0.25, f"only {drawn:.0%} of the page differs from the background"
    colours = len(np.unique(pixels.reshape(-1, 3) // 8, axis=0))
    assert colours > 300, f"{colours} colours: charts and thumbnails did not render"
    # the chart colours show: the swatch of the scene's red garments and the bar blue
    assert np.any(np.all(np.abs(pixels.astype(int) - [190, 30, 40]) < 12, axis=2))
    assert np.any(np.all(np.abs(pixels.astype(int) - [0x3B, 0x6E, 0xA8]) < 6, axis=2))


def test_an_empty_report_renders_its_no_data_message(
    local_stack: Settings, db: psycopg2.extensions.connection, tmp_path: Path
) -> None:
    page = tmp_path / "empty.html"
    page.write_text(render_html(build_report(local_stack.database_url, SINCE, UNTIL)))
    pixels = screenshot(page, tmp_path / "empty.png", height=600)
    assert pixels.shape == (600, WIDTH, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # text was drawn
