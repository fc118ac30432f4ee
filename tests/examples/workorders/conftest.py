"""The work-order app on a demo hospital, served from a background event loop."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "workorders"))


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        """Run a plain function on the loop thread (the desk's clock lives there)."""
        async def go():
            return fn(*args)
        return self.run(go())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Served:
    def __init__(self, loop: _Loop, store, desk, url: str, runner) -> None:
        self.loop, self.store, self.desk, self.url, self.runner = loop, store, desk, url, runner


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app over a freshly seeded demo store on 127.0.0.1 (an ephemeral port)."""
    from aiohttp import web
    from woweb.demo import pager, seed
    from woweb.web import make_app

    from vitalcore.clinical import WallClock
    from vitalcore.service import ServiceDesk

    lt = _Loop()
    path = tmp_path_factory.mktemp("workorders") / "clinical.sqlite"

    async def start():
        clock = WallClock(asyncio.get_running_loop())
        store, desk = seed(str(path), time.time_ns() // 1000, log2_n=10,
                           desk_factory=lambda s: ServiceDesk(s.db, clock=clock, notifier=pager()))
        runner = web.AppRunner(make_app(store, desk))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return Served(lt, store, desk, f"http://127.0.0.1:{port}", runner)

    s = lt.run(start())
    yield s
    lt.run(s.runner.cleanup())
    lt.call(s.store.close)
    lt.close()
