"""Live ward and central monitoring dashboards on vitalcore (docs/dashboard.md).

``python examples/dashboard/run.py [--devices N] [--wards K] [--http-port 8080] [--data DIR]``
starts, in one event loop, the embedded MQTT server with its store, a simulated ward of
MQTT wearables, the alarm engine, the BP scheduler, a clinical SQLite store with a demo
hospital and users, and the dashboard on http://127.0.0.1:PORT/ (printed). Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vcdash.serve import serve  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="examples/dashboard/run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=24, help="simulated wearables (default 24)")
    ap.add_argument("--wards", type=int, default=2, help="wards they are dealt to (default 2)")
    ap.add_argument("--http-port", type=int, default=8080, help="dashboard port (0: free one)")
    ap.add_argument("--mqtt-port", type=int, default=0, help="MQTT port (default: a free one)")
    ap.add_argument("--data", default=None, help="data directory (default: temporary, removed)")
    ap.add_argument("--session-ttl", type=float, default=1800.0, help="idle session expiry, s")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= 2000 or not 1 <= args.wards <= args.devices:
        ap.error("need 1 <= --wards <= --devices <= 2000")

    async def job() -> None:
        await serve(args.data, devices=args.devices, wards=args.wards,
                    http_port=args.http_port, mqtt_port=args.mqtt_port,
                    session_ttl_s=args.session_ttl, seed=args.seed)

    try:
        import uvloop
        uvloop.run(job())
    except ImportError:
        asyncio.run(job())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
