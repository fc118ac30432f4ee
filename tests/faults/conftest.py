"""Fixtures of the fault-injection tests: a bounded asyncio runner, a scratch directory."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
def run():
    """Run a coroutine to completion on a fresh asyncio loop within ``timeout`` s."""

    def runner(coro, timeout: float = 180.0):
        async def bounded():
            return await asyncio.wait_for(coro, timeout)

        return asyncio.run(bounded())

    return runner
