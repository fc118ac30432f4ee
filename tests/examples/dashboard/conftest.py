"""The dashboard running in a background event loop, and headless Chromium (Playwright)."""

from __future__ import annotations

import json

import pytest

from loop_thread import LoopThread


@pytest.fixture(scope="package")
def dashboard(tmp_path_factory):
    """A dashboard with 8 simulated devices in 2 wards; leads off on device 1 at 4-40 s."""
    from vcdash.serve import start_dashboard

    lt = LoopThread()
    data = tmp_path_factory.mktemp("dashboard")
    dash = lt.run(start_dashboard(data, devices=8, wards=2, http_port=0, session_ttl_s=600,
                                  log2_n=10, nibp_deflate_mmhg_s=10.0, leads_off_s=(4.0, 40.0),
                                  link_drop_at_s=3600.0, stagger_s=0.5))
    dash.loop = lt
    dash.users = json.loads(dash.users_file.read_text())["users"]
    yield dash
    lt.run(dash.stop())
    lt.close()


@pytest.fixture
def shots(tmp_path):
    """Directory for screenshots of this test (in pytest's tmp dir)."""
    d = tmp_path / "screenshots"
    d.mkdir()
    return d
