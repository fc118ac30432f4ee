"""The live system behind the dashboard, in the running event loop.

:class:`LiveSystem` composes vitalcore's public pieces the way ``python -m vitalcore run``
does (:mod:`vitalcore.sim.run`): the embedded MQTT :class:`~vitalcore.server.Server` with
its :class:`~vitalcore.storage.Store`, an :class:`~vitalcore.alarms.AlarmEngine` on the
store (durable :class:`~vitalcore.alarms.AlarmLog`), a simulated
:class:`~vitalcore.sim.Ward` of gmqtt wearables over loopback MQTT, a
:class:`~vitalcore.server.commands.CommandCenter` with a
:class:`~vitalcore.clinical.BPScheduler` (a 15/30 min day/night schedule per patient,
"measure now" per patient or ward), the clinical SQLite store with the demo organisation
(:mod:`.hospital`), a :class:`~vitalcore.clinical.Records` view on the store and alarm
log, and a :class:`~vitalcore.live.LiveFanout` of decimated waveforms for browsers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vitalcore.alarms import AlarmEngine, AlarmLog
from vitalcore.clinical import (
    AlarmLogSource,
    BPScheduleConfig,
    BPScheduler,
    Records,
    devices_from_spans,
    open_store,
)
from vitalcore.live import LiveFanout
from vitalcore.server import Accounts, Server
from vitalcore.server.auth import SCRYPT_LOG2_N
from vitalcore.server.commands import CommandCenter, CommandRound
from vitalcore.sim.ward import Ward, provision_ward, save_credentials

from .hospital import USERS_FILE, DemoHospital, build_hospital, save_users

__all__ = ["LiveSystem", "BpRound"]

log = logging.getLogger("vcdash")

BP_TIMEOUT_S = 180.0  #: a measurement not finished by then is TIMEOUT


@dataclass
class BpRound:
    """A "measure BP now" issued from the dashboard (or by a schedule)."""

    round_id: int
    ward_id: str | None
    patient_id: str | None
    started_us: int
    round: CommandRound
    by: str = ""


class LiveSystem:
    """Server, store, alarms, simulated ward, clinical store, BP scheduler, fan-out.

    Parameters
    ----------
    data_dir : path
        Everything is written here (store, alarm log, clinical SQLite, credentials).
    devices, wards : int
        Simulated wearables and the wards they are dealt to.
    mqtt_port : int
        MQTT port on 127.0.0.1 (0: a free one).
    log2_n : int
        scrypt cost of device and user secrets (tests lower it).
    nibp_deflate_mmhg_s : float
        Cuff deflation rate of the simulated devices, mmHg/s (3: ~35 s a measurement).
    leads_off_s : (float, float)
        Leads-off episode of the ward's second device, s after start (an alarm).
    scenarios : bool
        The ward's scenarios (link drop, leads off, battery drain, lead-wire limit).
    loopback : bool
        No MQTT devices: the ward's wearables feed the store in-process
        (:class:`~.feeder.FrameFeeder`; a cheap load for hundreds of patients; BP
        commands then find no device session).
    """

    def __init__(self, data_dir: str | Path, devices: int = 12, wards: int = 2, *,
                 mqtt_port: int = 0, log2_n: int = SCRYPT_LOG2_N, seed: int = 0,
                 nibp_deflate_mmhg_s: float = 3.0, leads_off_s: tuple[float, float] = (15, 35),
                 link_drop_at_s: float = 60.0, scenarios: bool = True,
                 stagger_s: float = 2.0, loopback: bool = False) -> None:
        self.root = Path(data_dir)
        self.n_devices, self.n_wards = devices, wards
        self.mqtt_port, self.log2_n, self.seed = mqtt_port, log2_n, seed
        self.ward_options = dict(nibp_deflate_mmhg_s=nibp_deflate_mmhg_s,
                                 leads_off_s=leads_off_s, link_drop_at_s=link_drop_at_s,
                                 scenarios=scenarios, stagger_s=stagger_s)
        self.loopback = loopback
        self.feeder = None
        self.rounds: dict[int, BpRound] = {}
        self._next_round = 1
        self.store = self.server = self.engine = self.clinical = None
        self.center = self.scheduler = self.ward = self.fanout = self.records = None
        self.hospital: DemoHospital | None = None
        self.started_us = 0

    async def start(self) -> None:
        """Start everything; the ward's devices connect in the background (stagger_s)."""
        from vitalcore.storage import Store  # heavy: only when started

        self.root.mkdir(parents=True, exist_ok=True)
        self.started_us = time.time_ns() // 1000
        accounts = Accounts(log2_n=self.log2_n)
        creds = provision_ward(self.n_devices, accounts)
        accounts.save(self.root / "accounts.json")
        save_credentials(self.root / "sim-devices.json", creds)
        self.store = Store(self.root / "store")
        self.server = Server(self.store, accounts, host="127.0.0.1", port=self.mqtt_port)
        await self.server.start()
        self.engine = AlarmEngine(alarm_log=AlarmLog(self.root / "alarms"))
        self.server.broker.add_presence_listener(self.engine.device_presence)
        self.engine.attach(self.store)
        self.clinical = open_store(self.root / "clinical.sqlite", log2_n=self.log2_n)
        self.hospital = build_hospital(self.clinical, sorted(creds), self.n_wards)
        self.records = Records(self.store, AlarmLogSource(self.engine.log))
        self.center = CommandCenter(self.server.broker, self.store,
                                    default_timeout_s=BP_TIMEOUT_S)
        self.scheduler = BPScheduler(
            self.center, devices_from_spans(self.clinical.device_spans),
            ward_devices=self.clinical.devices_of_ward, timeout_s=BP_TIMEOUT_S,
            on_round=self._scheduled_round)
        cfg = BPScheduleConfig("Europe/Berlin")
        for pid in self.hospital.patients:
            self.scheduler.start(pid, cfg)
        self.fanout = LiveFanout()
        self.fanout.attach(self.store)
        self.fanout.start(0.25)
        ward = Ward(creds, "127.0.0.1", self.server.port, seed=self.seed, **self.ward_options)
        if self.loopback:
            from .feeder import FrameFeeder

            self.feeder = FrameFeeder(ward.wearables, self.store)
            self.feeder.start()
        else:
            self.ward = ward
            await self.ward.start()

    def write_users(self, url: str) -> Path:
        """Write the demo users' passwords (0600) next to the data; returns the path."""
        path = self.root / USERS_FILE
        save_users(path, self.hospital, url)
        return path

    # -- BP -------------------------------------------------------------------------------
    def _scheduled_round(self, patient_id, ward_id, rnd: CommandRound) -> None:
        if not any(r.round is rnd for r in self.rounds.values()):
            self._remember(BpRound(0, ward_id, patient_id, time.time_ns() // 1000, rnd,
                                   "schedule"))

    def _remember(self, r: BpRound) -> BpRound:
        r.round_id = self._next_round
        self._next_round += 1
        self.rounds[r.round_id] = r
        while len(self.rounds) > 200:  # keep the recent ones
            del self.rounds[min(self.rounds)]
        return r

    def measure_now(self, user: str, *, ward_id: str | None = None,
                    patient_id: str | None = None) -> BpRound:
        """One START_NIBP round for a ward or a patient (access checked by the caller)."""
        before = self._next_round
        if ward_id is not None:
            rnd = self.scheduler.measure_ward_now(ward_id)
        else:
            rnd = self.scheduler.measure_now(patient_id)
        for r in self.rounds.values():  # the on_round hook recorded it: who asked
            if r.round is rnd and r.round_id >= before:
                r.by = user
                return r
        return self._remember(BpRound(0, ward_id, patient_id, time.time_ns() // 1000, rnd, user))

    # -- lifecycle ------------------------------------------------------------------------
    async def stop(self) -> None:
        """Devices drain and disconnect, then everything closes in reverse order."""
        if self.ward is not None:
            await self.ward.stop(drain_timeout_s=2.0)
        if self.feeder is not None:
            await self.feeder.stop()
        for closer in (self.fanout, self.scheduler, self.center):
            if closer is not None:
                closer.close()
        if self.server is not None:
            await self.server.stop()
        if self.engine is not None:
            self.engine.close()
        if self.store is not None:
            self.store.close()
        if self.clinical is not None:
            self.clinical.close()
        await asyncio.sleep(0)
