"""The lifecycle example's demo hospital, built once, and its web app on a test server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "lifecycle"))


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo (6 h of device time, 3-minute stretches of STATUS frames) on SQLite."""
    from vclife.demo import build_demo

    data = tmp_path_factory.mktemp("lifecycle")
    d = build_demo(str(data / "clinical.sqlite"), data, hours=6, stretch_min=3)
    yield d
    d.close()
