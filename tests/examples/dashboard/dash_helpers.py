"""Shared by the dashboard tests: paths, a loop thread, login."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "dashboard"))


class LoopThread:
    """An asyncio loop in a thread; ``run(coro)`` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


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
