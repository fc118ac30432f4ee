"""Lifecycle tracking web app: due list, statistics, drill-down, usage, exports, JSON API.

``python examples/lifecycle/run.py [--port 8081] [--data DIR] [--hours 6] [--speed 60]``
builds the demo hospital (vclife/demo.py: simulated terminals, hours from their STATUS
frames), keeps simulating device time ``--speed`` times faster than the wall clock, and
serves http://127.0.0.1:PORT/ (log in as ``biomed`` / ``biomed-pw``). Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402
from vclife.demo import build_demo  # noqa: E402
from vclife.web import create_app  # noqa: E402


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="examples/lifecycle/run.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8081, help="HTTP port on 127.0.0.1")
    ap.add_argument("--data", default=None, help="data directory (default: temporary)")
    ap.add_argument("--hours", type=int, default=6, help="device hours simulated up front")
    ap.add_argument("--speed", type=float, default=60.0, help="device s per wall-clock s")
    args = ap.parse_args(argv)
    data = Path(args.data or tempfile.mkdtemp(prefix="vclife-"))
    data.mkdir(parents=True, exist_ok=True)
    demo = build_demo(str(data / "clinical.sqlite"), data, hours=args.hours)
    runner = web.AppRunner(create_app(demo.store, demo.tracker))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    print(f"lifecycle app on http://127.0.0.1:{args.port}/ (biomed / biomed-pw); data {data}")
    sim = asyncio.create_task(demo.fleet.run(args.speed))
    try:
        await asyncio.Event().wait()
    finally:
        sim.cancel()
        await runner.cleanup()
        demo.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
