"""Fixtures of the server tests: both event loops, a real Store, a running Server."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """Run a coroutine to completion on a fresh loop of each kind (30 s bound)."""

    def runner(coro, timeout: float = 30.0):
        async def bounded():
            return await asyncio.wait_for(coro, timeout)

        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            return r.run(bounded())

    runner.loop_name = request.param
    return runner

