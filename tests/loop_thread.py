"""An asyncio event loop in a background thread, for tests that serve an app on it and
drive it from synchronous code (a browser, urllib)."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["LoopThread"]


class LoopThread:
    """``run(coro)`` waits for the coroutine's result; ``call(fn, *args)`` runs a plain
    function on the loop's thread (where the app's clocks and stores live); both wait at
    most ``timeout`` s unless told otherwise."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(
            self.timeout if timeout is None else timeout)

    def call(self, fn, *args):
        async def go():
            return fn(*args)

        return self.run(go())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
