"""Shared by the example-app tests: headless Chromium and screenshots for docs/img.

- ``browser``: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright, one per
  test module (Playwright's sync API keeps an event loop marked running in the main
  thread while open, which must not leak into other modules). A missing browser is a
  failure, not a skip: ``sh scripts/setup.sh test`` installs it.
- ``screenshot(page, name)``: a full-page PNG in the test's tmp dir (its path returned),
  also copied to ``docs/img/<name>`` when ``VC_DOCS_IMG=1`` (how the pictures in docs/
  are refreshed), so a plain test run never changes the checkout.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: Flags for this machine's closed network (no background connections, no sandbox as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: sh scripts/setup.sh test")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: sh scripts/setup.sh test installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def screenshot(tmp_path):
    def take(page, name: str) -> Path:
        png = tmp_path / name
        page.screenshot(path=str(png), full_page=True)
        if os.environ.get("VC_DOCS_IMG") == "1":
            shutil.copy(png, ROOT / "docs" / "img" / name)
        return png

    return take
