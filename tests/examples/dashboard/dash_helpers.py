"""Shared by the dashboard tests: paths, pages, login."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "dashboard"))


def new_page(browser):
    """A page in a fresh context (own cookies). bypass_csp: Playwright's wait_for_function
    evaluates strings, which the app's CSP (no eval) would refuse."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    return ctx.new_page()


def login(page, dash, user: str, next_path: str = "/") -> None:
    page.goto(dash.url.rstrip("/") + "/login?next=" + next_path)
    page.fill("#user", user)
    page.fill("#password", dash.users[user]["password"])
    page.click("#login-btn")
    page.wait_for_url(lambda u: "/login" not in u)
    page.wait_for_function("window.__dash !== undefined")
