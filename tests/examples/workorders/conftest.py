"""The work-order app on a demo hospital, served from a background event loop."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from loop_thread import LoopThread

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "workorders"))


class Served:
    def __init__(self, loop: LoopThread, store, desk, url: str, runner) -> None:
        self.loop, self.store, self.desk, self.url, self.runner = loop, store, desk, url, runner


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app over a freshly seeded demo store on 127.0.0.1 (an ephemeral port)."""
    from aiohttp import web
    from woweb.demo import pager, seed
    from woweb.web import make_app

    from vitalcore.clinical import WallClock
    from vitalcore.service import ServiceDesk

    lt = LoopThread(timeout=60.0)
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
