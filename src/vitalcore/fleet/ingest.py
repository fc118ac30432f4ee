"""Telemetry into hours: STATUS frames → credited hours, installs, usage, events.

:meth:`IngestPart.ingest` takes a :class:`~vitalcore.batch.DecodedBatch` (or
:class:`StatusReading` values) and, in one transaction:

- finds the terminal of each frame by its device id (a device of the clinical
  registry gets a terminal asset on first sight; any other device id is recorded in
  ``fleet_unknown`` with an ``unknown_device`` event: its accessories are still
  tracked, so no accessory hour is lost);
- finds or enrols each accessory by ``(kind, serial)`` and follows it between
  terminals (``fleet_installs``, ``moved`` events), refusing one serial reported by two
  terminals within ``conflict_window_s`` (``duplicate_serial``: the second terminal's
  readings are not credited);
- credits hours with :func:`vitalcore.fleet.accounting.observe` (resets detected and
  recorded), raises ``warning`` / ``over_limit`` once per crossing;
- adds terminal hours to the usage of the ward the terminal's patient was placed in
  (``fleet_usage``; the seconds credited by a reading go to the ward and UTC month at
  its timestamp; unbound time is not usage).

Readings are processed in device-time order. Telemetry never raises for bad content:
anomalies become events; only a broken database raises (``StorageError``) and then
nothing of the batch is written, so it can be fed again (stale readings are ignored).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import NamedTuple

from ..batch import DecodedBatch
from ..clinical.db import Tx
from ..errors import UsageError
from .accounting import Outcome, observe
from .core import EventBuffer, FleetCore
from .model import HOUR_S, Alert, AssetStatus, EventKind, Kind
from .rows import AssetRow, Rules, dev_key, insert_asset, load_asset, save_asset

__all__ = ["IngestPart", "StatusReading", "IngestReport", "readings_of"]

_IN_SERVICE = "status <> 'replaced' AND status <> 'retired'"


class StatusReading(NamedTuple):
    """The counters of one STATUS frame: terminal ``powered_s`` and accessories as
    ``(wire kind code, serial, powered_s)``; ``ts_us`` device time (µs)."""

    device_id: int
    ts_us: int
    powered_s: int
    accessories: tuple[tuple[int, str, int], ...] = ()


class IngestReport(NamedTuple):
    """What one :meth:`IngestPart.ingest` call did (counts of readings and seconds).

    ``rejected`` counts readings (or accessory entries) with impossible values (device
    id 0, time or counter out of range, a serial that is not 1..16 printable ASCII):
    skipped, the rest of the batch goes on. Decoded frames never have them.
    """

    readings: int
    rejected: int
    credited_s: int
    stale: int
    suspect: int
    resets: int
    conflicts: int
    unknown_devices: int
    unknown_kinds: int
    events: int


def readings_of(batch: DecodedBatch) -> list[StatusReading]:
    """The STATUS frames of ``batch`` as readings (accessories grouped by frame)."""
    st, acc = batch.tables["status"], batch.tables["accessories"]
    by_frame: dict[int, list[tuple[int, str, int]]] = {}
    for frame, kind, serial, raw in zip(acc["frame"].tolist(), acc["kind"].tolist(),
                                        acc["serial"].tolist(), acc["powered_s"].tolist(),
                                        strict=True):
        text = serial.rstrip(b"\0").decode("ascii", "replace")
        by_frame.setdefault(frame, []).append((kind, text, raw))
    return [StatusReading(dev, ts, raw, tuple(by_frame.get(frame, ())))
            for frame, dev, ts, raw in zip(st["frame"].tolist(), st["device_id"].tolist(),
                                           st["ts_us"].tolist(), st["powered_s"].tolist(),
                                           strict=True)]


_U64, _I63, _U32 = (1 << 64) - 1, (1 << 63) - 1, (1 << 32) - 1


def _valid_int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _valid_serial(serial: object) -> bool:
    return (isinstance(serial, str) and 1 <= len(serial) <= 16 and serial.isascii()
            and serial.isprintable())


def _ts_key(r: object) -> int:
    ts = getattr(r, "ts_us", 0)
    return ts if _valid_int(ts, 0, _I63) else 0


def month_of(ts_us: int) -> str:
    """``"YYYY-MM"`` of a µs timestamp (UTC)."""
    return _dt.datetime.fromtimestamp(ts_us / 1e6, _dt.UTC).strftime("%Y-%m")


class _Run:
    """State of one ingest transaction."""

    def __init__(self, tx: Tx, rules: Rules) -> None:
        self.tx = tx
        self.rules = rules
        self.buf = EventBuffer(tx)
        self.assets: dict[tuple, AssetRow | None] = {}
        self.touched: dict[int, AssetRow] = {}
        self.usage: dict[tuple[str, str, int], int] = {}
        self.unknown: dict[int, tuple[int, int]] = {}  # device id → (frames, last ts)
        self.counts = dict.fromkeys(("readings", "rejected", "credited_s", "stale", "suspect",
                                     "resets",
                                     "conflicts", "unknown_devices", "unknown_kinds"), 0)


class IngestPart(FleetCore):
    """Telemetry ingest."""

    def ingest(self, data: DecodedBatch | Iterable[StatusReading]) -> IngestReport:
        """Credit the hours of the STATUS frames in ``data`` (see the module docstring).

        Parameters
        ----------
        data : DecodedBatch or iterable of StatusReading

        Returns
        -------
        IngestReport
        """
        readings = readings_of(data) if isinstance(data, DecodedBatch) else list(data)
        for r in readings:
            if not isinstance(r, StatusReading):
                raise UsageError(f"ingest takes a DecodedBatch or StatusReading values, "
                                 f"got {type(r).__name__}")
        if not readings:
            return IngestReport(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        readings.sort(key=_ts_key)
        with self.db.transaction() as tx:
            run = _Run(tx, self._rules(tx))
            for r in readings:
                self._reading(run, r)
            for a in run.touched.values():
                save_asset(tx, a)
            for (ward, month, asset_id), seconds in sorted(run.usage.items()):
                tx.execute("INSERT INTO fleet_usage (ward_id, month, asset_id, seconds) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (ward_id, month, asset_id) "
                           "DO UPDATE SET seconds = fleet_usage.seconds + excluded.seconds",
                           (ward, month, asset_id, seconds))
            for dev, (n, last) in sorted(run.unknown.items()):
                tx.execute("UPDATE fleet_unknown SET frames = frames + ?, last_seen_us = CASE "
                           "WHEN last_seen_us < ? THEN ? ELSE last_seen_us END WHERE device_id = ?",
                           (n, last, last, dev_key(dev)))
        self.hub.publish(run.buf.events)
        return IngestReport(**run.counts, events=len(run.buf.events))

    # -- one STATUS frame ------------------------------------------------------------------
    def _reading(self, run: _Run, r: StatusReading) -> None:
        run.counts["readings"] += 1
        if not (_valid_int(r.device_id, 1, _U64) and _valid_int(r.ts_us, 0, _I63)
                and _valid_int(r.powered_s, 0, _U32)):
            run.counts["rejected"] += 1
            return
        term = self._terminal(run, r.device_id, r.ts_us)
        if term is not None:
            credit = self._credit(run, term, r.powered_s, r.ts_us, r.device_id)
            if credit:
                self._usage(run, term, r.device_id, r.ts_us, credit)
        seen: set[tuple[Kind, str]] = set()
        for entry in r.accessories if isinstance(r.accessories, tuple | list) else ():
            if not (isinstance(entry, tuple | list) and len(entry) == 3):
                run.counts["rejected"] += 1
                continue
            code, serial, raw = entry
            if not (_valid_int(code, 0, 255) and _valid_int(raw, 0, _U32)
                    and _valid_serial(serial)):
                run.counts["rejected"] += 1
                continue
            kind = Kind.of_wire(code)
            if kind is None or kind is Kind.TERMINAL or not serial:
                run.counts["unknown_kinds"] += 1
                continue
            if (kind, serial) in seen:  # one serial twice in one frame: count it once
                run.counts["conflicts"] += 1
                continue
            seen.add((kind, serial))
            self._accessory(run, kind, serial, raw, r.ts_us, r.device_id)

    def _terminal(self, run: _Run, device_id: int, ts: int) -> AssetRow | None:
        key = ("terminal", device_id)
        if key not in run.assets:
            tx, dk = run.tx, dev_key(device_id)
            a = load_asset(tx, f"device_id = ? AND {_IN_SERVICE}", (dk,))
            if a is None:
                known = tx.one("SELECT model, hospital_id FROM devices WHERE id = ?", (dk,))
                if known is None:
                    self._unknown(run, device_id, ts)
                else:
                    a = insert_asset(tx, Kind.TERMINAL, None, device_id)
                    a.model, a.hospital_id = known
            run.assets[key] = a
        a = run.assets[key]
        if a is None:
            run.counts["unknown_devices"] += 1
            n, last = run.unknown.get(device_id, (0, ts))
            run.unknown[device_id] = (n + 1, max(last, ts))
        return a

    @staticmethod
    def _unknown(run: _Run, device_id: int, ts: int) -> None:
        """First frame of an unknown device in this batch: its row (and, the first time
        ever, an event); frame counts are added when the batch is written."""
        dk = dev_key(device_id)
        if run.tx.one("SELECT 1 FROM fleet_unknown WHERE device_id = ?", (dk,)) is None:
            run.tx.execute("INSERT INTO fleet_unknown (device_id, first_seen_us, last_seen_us, "
                           "frames) VALUES (?, ?, ?, 0)", (dk, ts, ts))
            run.buf.add(ts, EventKind.UNKNOWN_DEVICE, None, device_id,
                        reason="STATUS from a device id in neither the clinical registry "
                               "nor the fleet; its accessories are tracked")

    def _accessory(self, run: _Run, kind: Kind, serial: str, raw: int, ts: int,
                   device_id: int) -> None:
        key = (kind, serial)
        a = run.assets.get(key)
        if a is None:
            a = load_asset(run.tx, "kind = ? AND serial = ?", (kind.value, serial))
            if a is None:
                a = insert_asset(run.tx, kind, serial, None)
            run.assets[key] = a
        if a.installed_on is None:
            self._move(run, a, device_id, ts)
        elif a.installed_on != device_id:
            since = max(a.last_seen_us or 0, self._installed_since(run, a))
            if ts <= since:
                pass  # a late frame of a terminal it left: the accounting finds it stale
            elif a.last_seen_us is not None and ts - a.last_seen_us < self.conflict_window_us:
                self._conflict(run, a, device_id, ts)
                return
            else:
                self._move(run, a, device_id, ts)
        self._credit(run, a, raw, ts, device_id)

    @staticmethod
    def _installed_since(run: _Run, a: AssetRow) -> int:
        """Start of the accessory's open install (0 if none)."""
        return int(run.tx.scalar("SELECT start_us FROM fleet_installs WHERE asset_id = ? "
                                 "AND end_us IS NULL", (a.id,)) or 0)

    def _move(self, run: _Run, a: AssetRow, device_id: int, ts: int) -> None:
        tx = run.tx
        old = a.installed_on
        if old is not None:
            tx.execute("UPDATE fleet_installs SET end_us = ? WHERE asset_id = ? AND end_us IS NULL",
                       (ts, a.id))
        tx.execute("INSERT INTO fleet_installs (asset_id, device_id, start_us) VALUES (?, ?, ?)",
                   (a.id, dev_key(device_id), ts))
        a.installed_on = device_id
        run.touched[a.id] = a
        if old is not None:
            run.buf.add(ts, EventKind.MOVED, a, device_id, from_device=dev_key(old),
                        to_device=dev_key(device_id))

    def _conflict(self, run: _Run, a: AssetRow, device_id: int, ts: int) -> None:
        run.counts["conflicts"] += 1
        last = run.tx.scalar("SELECT MAX(at_us) FROM fleet_events WHERE asset_id = ? "
                             "AND kind = ?", (a.id, EventKind.DUPLICATE_SERIAL.value))
        if last is None or ts - int(last) >= HOUR_S * 1_000_000:
            run.buf.add(ts, EventKind.DUPLICATE_SERIAL, a, device_id,
                        installed_on=dev_key(a.installed_on), reported_by=dev_key(device_id),
                        reason=f"{a.label} reported by {dev_key(device_id)} "
                               f"{(ts - (a.last_seen_us or ts)) / 1e6:.0f} s after "
                               f"{dev_key(a.installed_on)} did: two accessories share a "
                               "serial; the second terminal's readings are not credited")

    def _credit(self, run: _Run, a: AssetRow, raw: int, ts: int, source: int) -> int:
        had_pending = a.counter.pending_source
        c = observe(a.counter, raw, ts, source)
        run.touched[a.id] = a
        buf = run.buf
        if c.outcome is Outcome.STALE:
            run.counts["stale"] += 1
            return 0
        if c.outcome is Outcome.SUSPECT:
            run.counts["suspect"] += 1
            if had_pending != source:
                buf.add(ts, EventKind.SUSPECT, a, source, raw_s=raw, last_raw_s=c.previous_raw_s,
                        reason="counter below the last reading, from another terminal: held")
            return 0
        a.last_seen_us = ts if a.last_seen_us is None else max(a.last_seen_us, ts)
        if c.outcome is Outcome.FIRST:
            a.first_seen_us, a.opening_s = ts, raw
            buf.add(ts, EventKind.FIRST_SEEN, a, source, opening_s=raw)
        elif c.outcome is Outcome.RESET:
            run.counts["resets"] += 1
            buf.add(ts, EventKind.RESET, a, source, raw_s=raw, last_raw_s=c.previous_raw_s,
                    credited_s=c.seconds)
        if a.status is AssetStatus.LOST:
            a.status = AssetStatus.ACTIVE
            buf.add(ts, EventKind.FOUND, a, source)
        run.counts["credited_s"] += c.seconds
        self._alert(run, a, ts, source)
        return c.seconds if c.outcome is not Outcome.FIRST else 0

    @staticmethod
    def _alert(run: _Run, a: AssetRow, ts: int, source: int | None) -> None:
        new = run.rules.alert(a)
        if new > a.alert:
            limit, warn = run.rules.limits(a.kind, a.model)
            kind = EventKind.OVER_LIMIT if new is Alert.OVER_LIMIT else EventKind.WARNING
            run.buf.add(ts, kind, a, source, limit_h=limit, warn_h=warn,
                        hours=round(a.counter.total_s / HOUR_S, 3))
        a.alert = new

    @staticmethod
    def _usage(run: _Run, a: AssetRow, device_id: int, ts: int, seconds: int) -> None:
        row = run.tx.one(
            "SELECT p.ward_id FROM bindings b JOIN placements p ON p.patient_id = b.patient_id "
            "AND p.start_us <= ? AND (p.end_us IS NULL OR p.end_us > ?) WHERE b.device_id = ? "
            "AND b.start_us <= ? AND (b.end_us IS NULL OR b.end_us > ?)",
            (ts, ts, dev_key(device_id), ts, ts))
        if row is None:
            return
        key = (row[0] or "", month_of(ts), a.id)
        run.usage[key] = run.usage.get(key, 0) + seconds
