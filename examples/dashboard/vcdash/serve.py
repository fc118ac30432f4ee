"""Start everything in one event loop: :func:`serve` (used by run.py and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .sessions import Sessions
from .system import LiveSystem
from .web import create_app

__all__ = ["Dashboard", "start_dashboard", "serve"]


@dataclass
class Dashboard:
    """A running dashboard: the live system and the web site on ``url``."""

    system: LiveSystem
    sessions: Sessions
    runner: web.AppRunner
    url: str
    port: int
    users_file: Path

    async def restart_web(self, down_s: float = 0.0) -> None:
        """Stop the web app (browsers lose their WebSocket), wait, start a new one on the
        same port with the same sessions (tests of reconnecting)."""
        await self.runner.cleanup()
        await asyncio.sleep(down_s)
        self.runner = await _site(self.system, self.sessions, self.port)

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.system.stop()


async def _site(system: LiveSystem, sessions: Sessions, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(system, sessions), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner


async def start_dashboard(data_dir: str | Path, *, devices: int = 12, wards: int = 2,
                          http_port: int = 8080, session_ttl_s: float = 1800.0,
                          **system_options) -> Dashboard:
    """Start the live system and the web app on 127.0.0.1 (``http_port`` 0: a free port)."""
    system = LiveSystem(data_dir, devices, wards, **system_options)
    await system.start()
    sessions = Sessions(session_ttl_s)
    try:
        runner = await _site(system, sessions, http_port)
    except BaseException:
        await system.stop()
        raise
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/"
    return Dashboard(system, sessions, runner, url, port, system.write_users(url))


async def serve(data_dir: str | None, *, out: Callable[[str], None] = print,
                stop: asyncio.Event | None = None, **options) -> None:
    """Run until Ctrl-C / SIGTERM / ``stop``; print the URL and where the users are."""
    tmp = None
    if data_dir is None:
        data_dir = tmp = tempfile.mkdtemp(prefix="vitalcore-dashboard-")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    dash = await start_dashboard(data_dir, **options)
    try:
        h = dash.system.hospital
        out(f"vitalcore dashboard: open {dash.url}")
        out(f"  MQTT server on 127.0.0.1:{dash.system.server.port}, data in {data_dir}")
        out(f"  {len(h.patients)} patients in {len(h.wards)} wards "
            f"({len(h.transport)} in transport); demo users and their generated passwords "
            f"in {dash.users_file} (mode 0600):")
        for user, (role, scope) in sorted(h.users.items()):
            out(f"    {user:<12} {role:<20} {scope:<14} password {h.passwords[user]}")
        await stop.wait()
    finally:
        out("stopping: devices drain and disconnect, the store flushes")
        await dash.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
