"""Screenshots of the lifecycle pages for docs/lifecycle.md (headless Chromium, Playwright).

``python examples/lifecycle/screenshots.py [--out docs/img]`` builds the demo hospital,
serves the app on a free 127.0.0.1 port and writes ``lifecycle-due.png``,
``lifecycle-terminal.png``, ``lifecycle-battery.png`` and ``lifecycle-usage.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402
from vclife.demo import DEVICES, build_demo  # noqa: E402
from vclife.web import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = {
    "due": "/",
    "terminal": f"/terminals/{DEVICES[0]:016x}",
    "battery": "/assets/battery/BAT-1002",
    "usage": "/usage?from=2025-12",
}


def serve(app: web.Application) -> tuple[str, asyncio.AbstractEventLoop, web.AppRunner]:
    """Serve ``app`` on a free port from a background loop; its base URL."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    runner = web.AppRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    return asyncio.run_coroutine_threadsafe(start(), loop).result(60), loop, runner


def shoot(base: str, out: Path, pages: dict[str, str] = PAGES) -> list[Path]:
    """Screenshot each page (logged in as biomed) to ``out/lifecycle-<name>.png``."""
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                  http_credentials={"username": "biomed", "password": "biomed-pw"})
        page = ctx.new_page()
        for name, path in pages.items():
            resp = page.goto(base + path)
            if resp is None or resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {None if resp is None else resp.status}")
            target = out / f"lifecycle-{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "docs" / "img"))
    args = ap.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="vclife-shots-"))
    demo = build_demo(str(data / "clinical.sqlite"), data, hours=6)
    base, loop, runner = serve(create_app(demo.store, demo.tracker))
    try:
        for path in shoot(base, Path(args.out)):
            print(path)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
