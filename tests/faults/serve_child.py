"""A server process like ``python -m vitalcore serve`` whose store flushes to Parquet often.

``serve`` has no option for the store's flush interval (60 s), so a kill -9 within a few
seconds of a start never lands in a Parquet flush, a checkpoint or a WAL truncation.
This child runs the same pieces (``Store``, ``Server``, ``CoapEndpoint``) with
``flush_interval_s`` from the command line, so that the kill -9 scenario hits them too::

    python serve_child.py DATA ACCOUNTS MQTT_PORT COAP_PORT|- FLUSH_INTERVAL_S SYNC
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys


async def main(data: str, accounts: str, port: int, coap_port: int | None, flush_s: float,
               sync: str) -> None:
    from vitalcore.server import Accounts, Server
    from vitalcore.storage.store import Store

    store = Store(data, sync=sync, flush_interval_s=flush_s)
    server = Server(store, Accounts.load(accounts), port=port)
    coap = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if coap_port is not None:
            from vitalcore.server.coap import CoapEndpoint

            coap = CoapEndpoint(store, server.accounts, "127.0.0.1", coap_port)
            await coap.start()
        await stop.wait()
    finally:
        if coap is not None:
            await coap.stop()
        await server.stop()
        store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    d, a, p, c, f, s = sys.argv[1:7]
    asyncio.run(main(d, a, int(p), None if c == "-" else int(c), float(f), s))
