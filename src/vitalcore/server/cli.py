"""``python -m vitalcore serve``: run the MQTT server on a store directory.

Examples
--------
Create accounts, then serve::

    python -m vitalcore serve --accounts accounts.json --add-device 00000000000012ab
    python -m vitalcore serve --data /var/lib/vitalcore --accounts accounts.json \\
        --port 1883 --tls-port 8883 --cert server.pem --key server.key
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import ssl
import sys

from .auth import ROLES, Accounts
from .topics import parse_device_name

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vitalcore serve", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="vitalcore-data", help="store directory (default: %(default)s)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    ap.add_argument("--port", type=int, default=1883, help="plain MQTT port, 0 = none")
    ap.add_argument("--tls-port", type=int, default=None, help="MQTT over TLS port")
    ap.add_argument("--coap-port", type=int, default=None,
                    help="CoAP (UDP) port for low-power devices (default: none; see docs/server.md)")
    ap.add_argument("--cert", help="TLS certificate chain (PEM)")
    ap.add_argument("--key", help="TLS private key (PEM)")
    ap.add_argument("--accounts", required=True, help="accounts file (JSON, mode 0600)")
    ap.add_argument("--sync", default="group", choices=("group", "always", "none"),
                    help="WAL durability policy (default: %(default)s)")
    ap.add_argument("--add-device", metavar="HEX16",
                    help="add/replace a device account (secret read from stdin/prompt), then exit")
    ap.add_argument("--add-user", metavar="NAME",
                    help="add/replace a user account (password read from stdin/prompt), then exit")
    ap.add_argument("--role", default="viewer", choices=ROLES, help="role of --add-user")
    ap.add_argument("--scope-device", action="append", default=[], metavar="HEX16",
                    help="device in the scope of --add-user (repeatable)")
    ap.add_argument("--grant", action="append", default=[], metavar="FILTER",
                    help="topic filter --add-user may subscribe to (repeatable)")
    ap.add_argument("--log-level", default="INFO")
    return ap


def _secret(what: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    return sys.stdin.readline().rstrip("\n")


def _edit_accounts(args: argparse.Namespace) -> int:
    accounts = Accounts.load(args.accounts) if os.path.exists(args.accounts) else Accounts()
    if args.add_device:
        device = parse_device_name(args.add_device)
        if device is None:
            sys.exit(f"device id must be 16 lower-case hex digits, got {args.add_device!r}")
        accounts.add_device(device, _secret(f"secret of device {args.add_device}"))
    else:
        devices = []
        for name in args.scope_device:
            if (d := parse_device_name(name)) is None:
                sys.exit(f"--scope-device must be 16 lower-case hex digits, got {name!r}")
            devices.append(d)
        accounts.add_user(args.add_user, _secret(f"password of {args.add_user}"), args.role,
                          devices, args.grant)
    accounts.save(args.accounts)
    print(f"{args.accounts}: {len(accounts)} account(s)")
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from ..storage.store import Store
    from .app import Server

    ctx = None
    if args.tls_port is not None:
        if not (args.cert and args.key):
            sys.exit("--tls-port needs --cert and --key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    accounts = Accounts.load(args.accounts)
    store = Store(args.data, sync=args.sync)
    server = Server(store, accounts, args.host, args.port or None, args.tls_port, ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    coap = None
    if args.coap_port is not None:
        from .coap import CoapEndpoint

        coap = CoapEndpoint(store, accounts, args.host, args.coap_port)
    try:
        await server.start()
        if coap is not None:
            await coap.start()
        await stop.wait()
    finally:
        if coap is not None:
            await coap.stop()
        await server.stop()
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vitalcore serve``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.add_device or args.add_user:
        return _edit_accounts(args)
    try:
        import uvloop
    except ImportError:
        logging.getLogger("vitalcore.server").warning("uvloop not installed: using asyncio")
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
