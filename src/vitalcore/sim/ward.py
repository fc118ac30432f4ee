"""A simulated ward: n MQTT wearables in one event loop, with scenarios and ground truth.

Credentials: the simulator needs each device's plain secret (the server keeps only
scrypt hashes in ``accounts.json``). :func:`provision_ward` creates random secrets
(:func:`secrets.token_urlsafe`), adds the devices to an :class:`~vitalcore.server.Accounts`
and returns the plain ones; :func:`save_credentials` writes them, mode 0600, as
``{"version": 1, "devices": {"<16 hex>": "<secret>"}}`` (``sim-devices.json`` in a
``run`` data directory) for ``python -m vitalcore simulate --accounts FILE``.

Scenarios (``scenarios=True``), by position in the ward, each with its ground truth on
the device's :class:`~vitalcore.sim.wearable.ScenarioWearable`:

- device 0: link drop: it talks through a :class:`~vitalcore.sim.link.LinkProxy`
  that is cut at ``link_drop_at_s`` for ``link_drop_for_s`` seconds (store and forward);
- device 1: leads-off episode ``leads_off_s``;
- device 2: battery drain: starts at 35 %, drains 60 %/h;
- device 3: lead wire 2 minutes short of its 4,380 h replacement limit;
- everyone: terminal and accessory hour counters drawn from the seed, true HR, SpO2
  and blood pressure drawn from the seed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import protocol as P
from ..errors import UsageError
from ..server.auth import Accounts
from ..server.topics import device_name, parse_device_name
from ..simulator import Accessory
from .link import LinkProxy
from .mqtt_device import MqttDevice
from .wearable import ScenarioWearable

__all__ = [
    "FIRST_DEVICE",
    "LEAD_WIRE_LIMIT_S",
    "WardCounters",
    "Ward",
    "run_ward",
    "provision_ward",
    "save_credentials",
    "load_credentials",
]

log = logging.getLogger("vitalcore.sim")

FIRST_DEVICE = 0x5600_0001  #: id of the first simulated device (then +1 each)
LEAD_WIRE_LIMIT_S = 4380 * 3600  #: lead wire replacement limit of the service contracts
#: ECG rate of the simulated devices, Hz (62 or 63 samples per 250 ms frame).
ECG_FS = 250


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; gmqtt only from DEBUG on (it logs every refused
    reconnect as a warning)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level.upper() != "DEBUG":
        logging.getLogger("gmqtt").setLevel(logging.ERROR)


def provision_ward(n: int, accounts: Accounts, first_device: int = FIRST_DEVICE) -> dict[int, str]:
    """Add ``n`` devices with fresh random secrets to ``accounts``; return id -> secret."""
    if not 1 <= n <= 100_000:
        raise UsageError(f"a ward has 1..100000 devices, got {n!r}")
    creds = {first_device + i: secrets.token_urlsafe(18) for i in range(n)}
    for dev, secret in creds.items():
        accounts.add_device(dev, secret)
    return creds


def save_credentials(path: str | os.PathLike[str], creds: Mapping[int, str]) -> None:
    """Write plain device secrets (mode 0600, atomically)."""
    path = Path(path)
    doc = {"version": 1, "devices": {device_name(d): s for d, s in sorted(creds.items())}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def load_credentials(path: str | os.PathLike[str]) -> dict[int, str]:
    """Read a file written by :func:`save_credentials` (UsageError if malformed)."""
    try:
        doc = json.loads(Path(path).read_text())
        if (not isinstance(doc, dict) or type(doc.get("version")) is not int
                or doc["version"] != 1
                or not isinstance(doc.get("devices"), dict)):
            raise ValueError("expected {'version': 1, 'devices': {...}}")
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read device credentials {path}: {exc}") from None
    out = {}
    for name, secret in doc["devices"].items():
        dev = parse_device_name(name)
        if dev is None or not isinstance(secret, str) or not secret:
            raise UsageError(f"{path}: bad entry {name!r} (16 hex digits -> non-empty secret)")
        out[dev] = secret
    if not out:
        raise UsageError(f"{path}: no devices")
    return out


@dataclass
class WardCounters:
    """Totals over a ward's devices (latency over the samples given to :meth:`Ward.counters`)."""

    devices: int = 0
    online: int = 0
    connect_failures: int = 0
    device_errors: int = 0
    messages_sent: int = 0
    messages_acked: int = 0
    frames_sent: int = 0
    republished: int = 0
    backlogged_frames: int = 0
    backlog_dropped_frames: int = 0
    reconnects: int = 0
    link_drops: int = 0
    commands: int = 0
    commands_answered: int = 0
    bad_commands: int = 0
    latency_samples: int = 0
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def _wearable(i: int, dev: int, rng: random.Random, start_us: int, scenarios: bool,
              nibp_deflate_mmhg_s: float, leads_off_s: tuple[float, float]) -> ScenarioWearable:
    sys_ = rng.choice([104, 112, 118, 126, 134, 142, 150])
    dia = rng.choice([62, 68, 74, 80, 86])
    h = 3600
    accessories = [
        Accessory(P.AccessoryKind.LEAD_WIRE, f"LW-{dev:08x}", rng.randrange(0, 4000 * h)),
        Accessory(P.AccessoryKind.BATTERY, f"BAT-{dev:08x}", rng.randrange(0, 4000 * h)),
        Accessory(P.AccessoryKind.COMMS_MODULE, f"CM-{dev:08x}", rng.randrange(0, 8000 * h)),
        Accessory(P.AccessoryKind.NIBP_CUFF, f"CUF-{dev:08x}", rng.randrange(0, 2000 * h)),
    ]
    kw: dict = {}
    if scenarios and i == 1:
        kw["leads_off_s"] = leads_off_s
    if scenarios and i == 2:
        kw.update(battery=35.0, battery_drain_pct_h=60.0)
    if scenarios and i == 3:
        accessories[0].powered_s = LEAD_WIRE_LIMIT_S - 120
    return ScenarioWearable(
        device_id=dev, start_us=start_us, hr_bpm=rng.choice([52, 64, 72, 88, 104, 118]),
        spo2=rng.choice([91, 94, 96, 98, 99]), seed=i, signal_s=30, ecg_fs=ECG_FS,
        nibp_sys=float(sys_), nibp_dia=float(min(dia, sys_ - 30)),
        nibp_deflate_mmhg_s=nibp_deflate_mmhg_s, powered_s=rng.randrange(0, 17000 * h),
        accessories=accessories, **kw,
    )


class Ward:
    """n :class:`~vitalcore.sim.mqtt_device.MqttDevice` in the running event loop.

    Parameters
    ----------
    credentials : mapping of int to str
        Device id -> secret; the ward uses the first ``n`` ids in ascending order.
    host, port : str, int
        Broker address.
    n : int, optional
        Devices to run (default: all in ``credentials``).
    seed : int
        Seed of the patients' truths and the accessory counters.
    scenarios : bool
        Run the scenarios of the module docstring.
    stagger_s : float
        Connects are spread over this many seconds.
    nibp_deflate_mmhg_s : float
        Cuff deflation rate of every device (mmHg/s).
    link_drop_at_s, link_drop_for_s : float
        Link drop of device 0 (seconds after :meth:`start`).
    leads_off_s : (float, float)
        Leads-off episode of device 1 (seconds of device time after start).
    """

    def __init__(self, credentials: Mapping[int, str], host: str, port: int, *,
                 n: int | None = None, seed: int = 0, scenarios: bool = True,
                 stagger_s: float = 1.0, nibp_deflate_mmhg_s: float = 3.0,
                 link_drop_at_s: float = 30.0, link_drop_for_s: float = 10.0,
                 leads_off_s: tuple[float, float] = (15.0, 35.0)) -> None:
        ids = sorted(credentials)
        if n is not None:
            if not 1 <= n <= len(ids):
                raise UsageError(f"n must be in 1..{len(ids)} (devices with credentials)")
            ids = ids[:n]
        if not ids:
            raise UsageError("no device credentials")
        self.host, self.port = host, port
        self.stagger_s = stagger_s
        self.scenarios = scenarios
        self.link_drop = (link_drop_at_s, link_drop_for_s)
        rng = random.Random(seed)
        start_us = time.time_ns() // 1000
        start_us -= start_us % 250_000  # ticks on wall-clock quarter seconds
        self.wearables = [
            _wearable(i, dev, rng, start_us, scenarios, nibp_deflate_mmhg_s, leads_off_s)
            for i, dev in enumerate(ids)
        ]
        self._creds = {dev: credentials[dev] for dev in ids}
        self.devices: list[MqttDevice] = []
        self.proxy: LinkProxy | None = None
        self.link_drop_times: list[tuple[float, float]] = []  # wall-clock (cut, restored)
        self.connect_failures = 0
        self.device_errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def wearable(self, device_id: int) -> ScenarioWearable:
        """The frame source (and ground truth) of ``device_id``."""
        for w in self.wearables:
            if w.device_id == device_id:
                return w
        raise UsageError(f"device {device_id:#x} is not in this ward")

    async def start(self) -> None:
        """Connect the devices (staggered) and start sending; returns once all tried."""
        if self.scenarios:
            self.proxy = LinkProxy(self.host, self.port)
            await self.proxy.start()
        n = len(self.wearables)
        for i, w in enumerate(self.wearables):
            via_proxy = self.proxy is not None and i == 0
            port = self.proxy.port if via_proxy else self.port
            dev = MqttDevice(w, self._creds[w.device_id], "127.0.0.1" if via_proxy else self.host,
                             port)
            self.devices.append(dev)
            self._tasks.append(asyncio.create_task(self._run_device(dev), name=dev.name))
            await asyncio.sleep(self.stagger_s / n)
        if self.proxy is not None:
            self._tasks.append(asyncio.create_task(self._drop_link(), name="link-drop"))

    async def _run_device(self, dev: MqttDevice) -> None:
        for attempt in range(5):
            try:
                await dev.connect()
                break
            except Exception as exc:  # refused or unreachable: counted, retried
                self.connect_failures += 1
                log.warning("device %s: connect failed (%s), attempt %d", dev.name, exc,
                            attempt + 1)
                await asyncio.sleep(1.0 + attempt)
        else:
            return
        try:
            await dev.run(self._stop)
        except Exception:  # a bug in the simulator: say so, keep the other devices going
            self.device_errors += 1
            log.exception("device %s stopped by an error", dev.name)

    async def _drop_link(self) -> None:
        at, dur = self.link_drop
        await asyncio.sleep(at)
        assert self.proxy is not None
        t_cut = time.time()
        await self.proxy.cut()
        log.info("link of device %s cut for %.0f s", self.devices[0].name, dur)
        await asyncio.sleep(dur)
        await self.proxy.restore()
        self.link_drop_times.append((t_cut, time.time()))

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop producing; each device drains what it holds, then DISCONNECTs."""
        self._stop.set()
        for t in self._tasks:
            if t.get_name() == "link-drop":
                t.cancel()
        if self.proxy is not None and not self.proxy.up:
            await self.proxy.restore()  # let device 0 deliver its backlog
        await asyncio.wait(self._tasks, timeout=drain_timeout_s + 15.0)
        if self.proxy is not None:
            await self.proxy.close()

    def counters(self, latencies: list[float] | None = None) -> WardCounters:
        """Totals now; percentiles over ``latencies`` (s) if given."""
        c = WardCounters(devices=len(self.wearables), connect_failures=self.connect_failures,
                         device_errors=self.device_errors)
        for d in self.devices:
            c.online += d.online
            for k, v in asdict(d.counters).items():
                if k in ("connects",):
                    continue
                setattr(c, k, getattr(c, k) + v)
        if latencies:
            ms = np.asarray(latencies) * 1e3
            c.latency_samples = len(ms)
            c.latency_p50_ms, c.latency_p99_ms = (float(v) for v in np.percentile(ms, [50, 99]))
        return c

    def take_latencies(self) -> list[float]:
        """Every device's publish-to-PUBACK latencies (s) since the last call."""
        out: list[float] = []
        for d in self.devices:
            out.extend(d.take_latencies())
        return out


async def run_ward(n: int, host: str, port: int,
                   accounts: Mapping[int, str] | str | os.PathLike[str],
                   duration_s: float | None = None, seed: int = 0, *,
                   stop: asyncio.Event | None = None, **ward_options) -> WardCounters:
    """Run ``n`` simulated devices against a broker until ``duration_s`` or ``stop``.

    Parameters
    ----------
    n : int
        Devices (the first ``n`` ids of ``accounts``).
    host, port : str, int
        Broker.
    accounts : mapping of int to str, or path
        Device id -> plain secret, or a file written by :func:`save_credentials`.
    duration_s : float, optional
        Seconds to run (default: until ``stop`` is set or the task is cancelled).
    seed : int
        Seed of the ward's truths.
    stop : asyncio.Event, optional
        Set it to end the run.
    **ward_options
        Passed to :class:`Ward`.

    Returns
    -------
    WardCounters
        Totals at the end, latency percentiles over the whole run.
    """
    creds = accounts if isinstance(accounts, Mapping) else load_credentials(accounts)
    ward = Ward(creds, host, port, n=n, seed=seed, **ward_options)
    stop = stop or asyncio.Event()
    latencies: list[float] = []
    await ward.start()
    try:
        if duration_s is None:
            await stop.wait()
        else:
            try:
                await asyncio.wait_for(stop.wait(), duration_s)
            except TimeoutError:
                pass
    finally:
        await ward.stop()
    latencies.extend(ward.take_latencies())
    return ward.counters(latencies)
