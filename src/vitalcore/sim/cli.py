"""``python -m vitalcore simulate``: a simulated ward against a running MQTT server.

Example (credentials written by ``python -m vitalcore run --data DIR``, or by
:func:`vitalcore.sim.ward.save_credentials` for accounts you created)::

    python -m vitalcore simulate --devices 50 --host 127.0.0.1 --port 1883 \\
        --accounts DIR/sim-devices.json --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from ..errors import UsageError
from .ward import WardCounters, load_credentials, run_ward, setup_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vitalcore simulate",
                                 description=__doc__.split("\n")[0].strip("`: "))
    ap.add_argument("--devices", type=int, default=None,
                    help="devices to run (default: every device in --accounts)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--accounts", required=True,
                    help="device credentials: {'version': 1, 'devices': {HEX16: secret}} (0600)")
    ap.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    ap.add_argument("--transport", default="mqtt", choices=("mqtt",),
                    help="device transport (only MQTT for now)")
    ap.add_argument("--no-scenarios", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-level", default="WARNING")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vitalcore simulate``; returns the exit status."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        creds = load_credentials(args.accounts)
        n = len(creds) if args.devices is None else args.devices
        if not 1 <= n <= len(creds):
            raise UsageError(f"--devices must be in 1..{len(creds)} (devices in {args.accounts})")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def job() -> WardCounters:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_ward(n, args.host, args.port, creds, args.duration, args.seed,
                              stop=stop, scenarios=not args.no_scenarios)

    try:
        import uvloop
        c = uvloop.run(job())
    except ImportError:
        c = asyncio.run(job())
    print(f"{c.devices} devices: {c.messages_sent:,} messages sent, {c.messages_acked:,} "
          f"acknowledged, {c.frames_sent:,} frames, {c.reconnects} reconnects, "
          f"{c.commands_answered} commands answered, {c.connect_failures} connect failures; "
          f"publish->ack p50 {c.latency_p50_ms:.1f} ms, p99 {c.latency_p99_ms:.1f} ms")
    return 0 if c.messages_sent == c.messages_acked and not c.device_errors else 1


if __name__ == "__main__":
    sys.exit(main())
