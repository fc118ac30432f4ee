"""The due page in headless Chromium (the screenshot tool of docs/lifecycle.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from screenshots import CHROMIUM, serve, shoot
from vclife.web import create_app


def test_due_page_renders_in_chromium(demo, tmp_path):
    if not Path(CHROMIUM).exists():  # a failure, not a skip: setup.sh test installs it
        pytest.fail(f"no {CHROMIUM}: sh scripts/setup.sh test installs Debian's chromium")
    base, loop, runner = serve(create_app(demo.store, demo.tracker))
    try:
        (png,) = shoot(base, tmp_path, {"due": "/"})
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    width = int.from_bytes(data[16:20], "big")
    assert width == 1280
