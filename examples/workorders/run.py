"""Run the work-order example app: ``python examples/workorders/run.py --data DIR [--demo]``.

Serves on http://127.0.0.1:8080/ (``--port``). With ``--demo`` and an empty ``--data``
directory a demo hospital is created; log in as ``nurse.li``, ``biomed.wu`` or
``acme.tech`` (vendor portal), passwords ``<user>-pw``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402
from woweb.demo import pager, seed  # noqa: E402
from woweb.web import make_app  # noqa: E402

from vitalcore.clinical import WallClock, open_store  # noqa: E402
from vitalcore.service import ServiceDesk  # noqa: E402


async def serve(data: Path, port: int, demo: bool) -> None:
    data.mkdir(parents=True, exist_ok=True)
    path = data / "clinical.sqlite"
    clock = WallClock(asyncio.get_running_loop())

    def factory(store):
        return ServiceDesk(store.db, clock=clock, notifier=pager())

    if demo and not path.exists():
        store, desk = seed(str(path), time.time_ns() // 1000, desk_factory=factory)
    else:
        store = open_store(str(path))
        desk = factory(store)
    desk.tick()  # arms the SLA/expiry timer
    runner = web.AppRunner(make_app(store, desk))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"work orders on http://127.0.0.1:{port}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--demo", action="store_true")
    a = p.parse_args()
    try:
        asyncio.run(serve(a.data, a.port, a.demo))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
