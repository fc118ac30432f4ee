"""Central view with hundreds of live patients in headless Chromium.

Starts the dashboard example (examples/dashboard) with ``--patients`` simulated wearables
fed in-process (vcdash.feeder.FrameFeeder: the store, alarm engine and live fan-out are
the real ones, only MQTT is skipped so the machine copes), logs in as the central
monitoring user, opens /central and measures over ``--seconds``:

- waveform frames per second in the page: requestAnimationFrame callbacks in which at
  least one canvas got new samples (the page's own counter, ``window.__dash``), and all
  rAF callbacks;
- the server's bytes/s to that WebSocket client (binary waveforms + JSON snapshots).

Baselines measured in the same run: the rAF rate of an empty page in the same browser
(what the browser gives at best), and the bytes/s the same samples would take as JSON
arrays of floats at full rate, one message per frame (what a naive feed would send).

Usage: PYTHONPATH=src python benchmarks/bench_dashboard.py [--patients 340] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "dashboard"))

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _loop_thread():
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def _naive_json_bytes_per_sample(system) -> float:
    """JSON bytes per sample of a naive feed: one message per frame, floats in µV / a.u."""
    from vitalcore import protocol as P

    dev = next(iter(system.hospital.patients.values()))
    w = system.store.buffers.window(dev, P.FrameType.ECG, P.EcgLead.II, 1.0)
    vals = np.round(w.values(), 1).tolist() if w is not None else [0.0] * 250
    doc = msgspec.json.encode({"dev": f"{dev:016x}", "type": 1, "ts": 1764115200000000,
                               "fs": 250, "v": vals[:63]})
    return len(doc) / 63


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=340)
    ap.add_argument("--wards", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot", default=None, help="save the central view here (PNG)")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright
    from vcdash.serve import start_dashboard

    loop = _loop_thread()

    def run(coro, timeout=300):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    tmp = tempfile.TemporaryDirectory(prefix="bench-dashboard-")
    t0 = time.monotonic()
    dash = run(start_dashboard(tmp.name, devices=args.patients, wards=args.wards, http_port=0,
                               log2_n=10, loopback=True, link_drop_at_s=3600.0))
    users = json.loads(dash.users_file.read_text())["users"]
    print(f"dashboard with {args.patients} patients in {args.wards} wards up in "
          f"{time.monotonic() - t0:.1f} s (in-process frame feeder, real store/alarms/fan-out)")
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            ctx = b.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
            page = ctx.new_page()
            # baseline: rAF rate of an empty page in the same browser
            page.set_content("<script>window.n=0;(function f(){window.n++;"
                             "requestAnimationFrame(f)})()</script>")
            time.sleep(1.0)
            n0 = page.evaluate("window.n")
            time.sleep(3.0)
            base_fps = (page.evaluate("window.n") - n0) / 3.0
            page.goto(dash.url + "login?next=/central")
            page.fill("#user", "central")
            page.fill("#password", users["central"]["password"])
            page.click("#login-btn")
            page.wait_for_url("**/central")
            page.wait_for_function(f"document.querySelectorAll('#tiles .tile').length == "
                                   f"{args.patients}", timeout=60_000)
            page.wait_for_function("window.__dash.waveFrames > 30", timeout=60_000)
            time.sleep(2.0)  # settle
            s0, c0, w0 = page.evaluate("window.__dash"), time.monotonic(), \
                dict(dash.system.fanout.counters)
            time.sleep(args.seconds)
            s1, c1, w1 = page.evaluate("window.__dash"), time.monotonic(), \
                dict(dash.system.fanout.counters)
            stats = page.evaluate("fetch('/api/stats').then(r => r.json())")
            if args.screenshot:
                page.screenshot(path=args.screenshot)
            # the same user on one ward's view (ECG + pleth per patient)
            page.goto(dash.url + "ward/w1")
            page.wait_for_function("window.__dash.state == 'live'", timeout=60_000)
            time.sleep(args.seconds / 2)
            wstats = page.evaluate("fetch('/api/stats').then(r => r.json())")
            wave_fps_ward = page.evaluate("window.__dash.waveFps")
            b.close()
    finally:
        feeder = dash.system.feeder
        run(dash.stop())
    dt = c1 - c0
    wave_fps = (s1["waveFrames"] - s0["waveFrames"]) / dt
    raf_fps = (s1["frames"] - s0["frames"]) / dt
    client = max(stats["clients"], key=lambda c: c["devices"])
    page_bps = (s1["bytes"] - s0["bytes"]) / dt
    samples_s = (w1["samples_in"] - w0["samples_in"]) / dt
    naive_bps = samples_s * _naive_json_bytes_per_sample(dash.system)
    print(f"\ncentral view, {client['devices']} live patients, {dt:.1f} s measured:")
    print(f"  waveform frames/s in the page (rAF with new samples drawn): {wave_fps:6.1f}")
    print(f"  rAF callbacks/s on the dashboard:                          {raf_fps:6.1f}")
    print(f"  page main thread in the draw loop: "
          f"{(s1['drawMs'] - s0['drawMs']) / max(s1['frames'] - s0['frames'], 1):.1f} ms/frame")
    print(f"  baseline: rAF callbacks/s of an empty page, same browser:  {base_fps:6.1f}")
    print(f"  server -> this WebSocket client: {client['bytes_per_s'] / 1e3:8.1f} kB/s over "
          f"{client['seconds']:.0f} s ({client['wave_bytes'] / max(client['bytes'], 1):.0%} "
          f"waveforms), received in the page {page_bps / 1e3:.1f} kB/s")
    print(f"  per patient: {client['bytes_per_s'] / client['devices']:.0f} B/s (central view: "
          f"ECG 125 Hz int16 in 32-byte-header packets, numerics/alarms JSON 1/s); "
          f"page playback delay {s1.get('jitterMs', 0):.0f} ms")
    print(f"  baseline: the raw samples it decimates ({samples_s:,.0f}/s, ECG 250 Hz + pleth "
          f"IR 100 Hz) as JSON floats, one message per frame: {naive_bps / 1e3:8.1f} kB/s "
          f"({naive_bps / max(client['bytes_per_s'], 1):.1f}x)")
    print(f"  frame feeder busy {feeder.busy_s / max(feeder.frames, 1) * 1e6:.0f} µs/frame; "
          f"fan-out dropped samples {w1['dropped_samples']}")
    wc = [c for c in wstats["clients"] if c["view"] == "ward"][0]
    print(f"  ward view ({wc['devices']} patients, ECG + pleth): {wc['bytes_per_s'] / 1e3:.1f} kB/s "
          f"= {wc['bytes_per_s'] / wc['devices']:.0f} B/s per patient; "
          f"{wave_fps_ward:.0f} waveform fps")
    ok = wave_fps >= 25
    print(f"\n{'PASS' if ok else 'FAIL'}: waveforms update at {wave_fps:.1f} fps (target >= 25)")
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
