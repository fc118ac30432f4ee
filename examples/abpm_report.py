"""A 24 h ambulatory BP recording, simulated end to end, and its report (HTML, PDF, PNG).

One simulated wearable (:class:`vitalcore.sim.wearable.ScenarioWearable`) wears a cuff
for 24 h of simulated time. A :class:`vitalcore.clinical.bp_schedule.BPScheduler` on a
:class:`~vitalcore.clinical.bp_schedule.FakeClock` measures every 15 min by day
(07:00-22:00 Europe/Berlin) and every 30 min by night through a real
:class:`~vitalcore.server.commands.CommandCenter` and a real
:class:`~vitalcore.storage.store.Store`: each START_NIBP is answered by the wearable's
own deflation and oscillometric estimate, its NUMERICS and ACK frames are fed to the
store and the center tracks them through its commit listener. The report is computed
from the store's numerics and rendered.

What is simulated rather than real: the MQTT broker. :class:`vitalcore.sim.loopback.LoopbackWard`
has the three members the center uses (``loop``, ``tree.match``, ``publish``) and hands
each command to the wearable at the fake clock's time; a real broker would need 24 h of
real time. ECG and pleth frames are generated but not stored, to keep the run small.

The patient's true BP follows a dipping pattern (day ~132/84, night ~112/70 mmHg, a
morning rise, noise); the device is off the body 07:30-07:55 (shower: NOT_CONNECTED) and
one reading at 14:00 has a pulse pressure of 14 mmHg (rejected by the validity check).

Run: ``python examples/abpm_report.py [--out docs/img]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from vitalcore.clinical.abpm import NIBP_CODES, abpm_report
from vitalcore.clinical.bp_schedule import BPScheduleConfig, BPScheduler, FakeClock
from vitalcore.clinical.report import ReportHeader, render_html, render_pdf
from vitalcore.server import CommandCenter, device_name
from vitalcore.sim.loopback import LoopbackWard
from vitalcore.sim.wearable import ScenarioWearable
from vitalcore.storage.store import Store

TZ = "Europe/Berlin"
DEVICE = 0x5A17
PATIENT = "P-2026-0417"


def us_of(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def local_hour(t_us: int) -> float:
    d = datetime.fromtimestamp(t_us / 1e6, ZoneInfo(TZ))
    return d.hour + d.minute / 60


def true_bp(t_us: int, rng: np.random.Generator) -> tuple[float, float]:
    """The patient's arterial pressure (mmHg): a dipper with a morning rise."""
    h = local_hour(t_us)
    asleep = h >= 23 or h < 6.5
    sys_, dia = (112.0, 70.0) if asleep else (132.0, 84.0)
    if 6.5 <= h < 9:  # morning surge
        sys_, dia = sys_ + 8.0, dia + 4.0
    sys_ += 4.0 * math.sin(2 * math.pi * (h - 15) / 24) + rng.normal(0, 6)
    dia += 2.0 * math.sin(2 * math.pi * (h - 15) / 24) + rng.normal(0, 4)
    if 14.0 <= h < 14.2:  # an artefact-like reading: pulse pressure 14 mmHg
        return 118.0, 104.0
    return round(sys_, 1), round(min(dia, sys_ - 25), 1)


async def simulate(store_dir: Path, seed: int) -> tuple:
    t0 = us_of(datetime(2026, 6, 10, 10, 0, tzinfo=ZoneInfo(TZ)))
    t1 = t0 + 24 * 3600 * 10**6
    shower = (us_of(datetime(2026, 6, 11, 7, 30, tzinfo=ZoneInfo(TZ))),
              us_of(datetime(2026, 6, 11, 7, 55, tzinfo=ZoneInfo(TZ))))
    clock = FakeClock(t0 - 1)
    rng = np.random.default_rng(seed)
    wearable = ScenarioWearable(device_id=DEVICE, start_us=t0 - 1, seed=seed, hr_bpm=68.0)
    store = Store(store_dir, flush_interval_s=0, sync="none")

    def cuff_on_patient(w: ScenarioWearable, t_us: int) -> None:
        w.nibp_sys, w.nibp_dia = true_bp(t_us, rng)

    broker = LoopbackWard(asyncio.get_running_loop(), clock, store, [wearable],
                          before_command=cuff_on_patient)
    clock.call_at(shower[0], lambda: broker.connected.discard(DEVICE))  # cuff off the body
    clock.call_at(shower[1], lambda: broker.connected.add(DEVICE))
    center = CommandCenter(broker, store, default_timeout_s=180.0)
    scheduler = BPScheduler(center, lambda patient, t: [DEVICE] if patient == PATIENT else [],
                            clock=clock)
    scheduler.start(PATIENT, BPScheduleConfig(TZ, day_interval_s=900, night_interval_s=1800))
    clock.advance_to(t0)  # the first measurement at 10:00
    for hour in range(24):
        clock.advance_to(min(t0 + (hour + 1) * 3600 * 10**6, t1 - 1))
    status = scheduler.status(PATIENT)  # the 09:45 measurement ended at ~09:46
    scheduler.close()
    center.close()
    table = store.read_numerics(DEVICE, t0, t1, NIBP_CODES)
    store.close()
    return t0, t1, table, status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"), help="output directory")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0, t1, table, status = asyncio.run(simulate(Path(tmp) / "store", args.seed))
    expected = status.issued + status.skipped
    print(f"schedule: {status.issued} rounds issued, outcomes {status.outcomes}")
    report = abpm_report(table, TZ, t0_us=t0, t1_us=t1, n_expected=expected)
    d, n, h = report.day, report.night, report.h24
    print(f"readings {report.n_readings}, valid {report.n_valid} of {expected} expected "
          f"({report.valid_pct:.0f} %), invalid {({k: v for k, v in report.invalid.items() if v})}")
    for name, p, load in (("day", d, report.load_day), ("night", n, report.load_night),
                          ("24 h", h, report.load_24h)):
        print(f"{name:>5}: n={p.n:3d}  {p.sys:6.1f}/{p.dia:5.1f} mmHg  MAP {p.map:5.1f}  "
              f"PR {p.pr:5.1f}  load sys {load.sys_pct:4.0f} % dia {load.dia_pct:4.0f} %")
    print(f"dipping {report.dipping_sys_pct:.1f} % systolic -> {report.dipping_class}; "
          f"adequate: {report.adequate} {report.notes}")
    header = ReportHeader(PATIENT, "Erika Mustermann", "Cardiology 3B", device_name(DEVICE))
    html_path = args.out / "abpm_report.html"
    html_path.write_text(render_html(report, header), encoding="utf-8")
    pdf_path = args.out / "abpm_report.pdf"
    pdf_path.write_bytes(render_pdf(report, header))
    print(f"wrote {html_path}, {pdf_path}")
    if shutil.which("pdftoppm"):
        png = args.out / "abpm_report_p1"
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
                        str(pdf_path), str(png)], check=True)
        print(f"wrote {png}.png")
    else:
        print("pdftoppm (poppler-utils) not found: no PNG of the first page")


if __name__ == "__main__":
    main()
