"""Durable alarm log: every alarm event and user action with its evidence, as Arrow.

:class:`AlarmLog` appends each list of :class:`~vitalcore.alarms.model.AlarmEvent` as
one record batch to an Arrow IPC stream file (``alarms-<µs>-<n>.arrows`` under its
directory, a new file per open and every ``segment_bytes``), then flushes and
``fsync``\\ s it before :meth:`AlarmLog.append` returns. The engine uses
:meth:`AlarmLog.submit` instead: a writer thread group-commits what is queued, so
annunciating an alarm never waits for the disk (an event is handed to the writer before
it is published; a crash can lose from the log only the events of the last few
milliseconds, which may already have been published). A crash can tear only the last
batch of the last file; :meth:`AlarmLog.read` keeps every complete batch before it and
counts the torn file (``torn_files``).

Columns (one row per event): seq, kind, ts_us (server time of the change), alarm_id,
device_id, code, category, priority (1 low .. 3 high), state, message, onset_us,
raised_us, value, limit, user, targets (list of names), acked_by, acked_us,
silenced_until_us, escalation_level, and the evidence of RAISED events:
``numerics`` (list of {code, ts_us, value}: the device's latest valid numerics),
wave_type (FrameType, 0 = none), wave_fs (Hz), wave_start_us, wave (list of float32:
ECG in mV, pleth in a.u.; NaN where data was missing).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StorageError, UsageError
from ..storage.fsync import sync_fd
from .model import AlarmEvent

__all__ = ["AlarmLog", "SCHEMA"]

log = logging.getLogger("vitalcore.alarms.log")

_NUM = pa.struct([("code", pa.uint8()), ("ts_us", pa.int64()), ("value", pa.float64())])

SCHEMA = pa.schema([
    ("seq", pa.int64()), ("kind", pa.string()), ("ts_us", pa.int64()),
    ("alarm_id", pa.string()), ("device_id", pa.uint64()), ("code", pa.string()),
    ("category", pa.string()), ("priority", pa.uint8()), ("state", pa.string()),
    ("message", pa.string()), ("onset_us", pa.int64()), ("raised_us", pa.int64()),
    ("value", pa.float64()), ("limit", pa.float64()), ("user", pa.string()),
    ("targets", pa.list_(pa.string())), ("acked_by", pa.string()), ("acked_us", pa.int64()),
    ("silenced_until_us", pa.int64()), ("escalation_level", pa.uint8()),
    ("numerics", pa.list_(_NUM)), ("wave_type", pa.uint8()), ("wave_fs", pa.uint16()),
    ("wave_start_us", pa.int64()), ("wave", pa.list_(pa.float32())),
])


def _batch(events: list[AlarmEvent]) -> pa.RecordBatch:
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for e in events:
        a = e.alarm
        ev = e.evidence
        row = {
            "seq": e.seq, "kind": str(e.kind), "ts_us": e.ts_us, "alarm_id": a.alarm_id,
            "device_id": a.device_id, "code": a.code, "category": str(a.category),
            "priority": int(a.priority), "state": str(a.state), "message": a.message,
            "onset_us": a.onset_us, "raised_us": a.raised_us, "value": a.value,
            "limit": a.limit, "user": e.user, "targets": list(e.targets),
            "acked_by": a.acked_by, "acked_us": a.acked_us,
            "silenced_until_us": a.silenced_until_us, "escalation_level": a.escalation_level,
            "numerics": [] if ev is None else [
                {"code": c, "ts_us": t, "value": v} for c, (t, v) in sorted(ev.numerics.items())
            ],
            "wave_type": 0 if ev is None else ev.wave_type,
            "wave_fs": 0 if ev is None else ev.wave_fs,
            "wave_start_us": 0 if ev is None else ev.wave_start_us,
            "wave": None,
        }
        for k, v in row.items():
            cols[k].append(v)
        cols["wave"][-1] = np.asarray(ev.wave, np.float32) if ev is not None else np.empty(0, np.float32)
    arrays = []
    for field in SCHEMA:
        if field.name == "wave":
            lengths = np.array([len(w) for w in cols["wave"]], np.int32)
            offsets = np.zeros(len(lengths) + 1, np.int32)
            np.cumsum(lengths, out=offsets[1:])
            flat = np.concatenate(cols["wave"]) if cols["wave"] else np.empty(0, np.float32)
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32())))
        else:
            arrays.append(pa.array(cols[field.name], field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


class AlarmLog:
    """Append-only, fsync'd log of alarm events under ``root``; read back as Arrow.

    Parameters
    ----------
    root : path
        Directory (created if missing). Files of earlier runs are kept and read.
    fsync : bool
        ``fsync`` after every append (default True; False only for tests/benchmarks).
    segment_bytes : int
        Start a new file when the current one passes this size.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True,
                 segment_bytes: int = 64 << 20) -> None:
        if segment_bytes < 4096:
            raise UsageError("segment_bytes must be >= 4096")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._file = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._n = 0
        self.counters = {"appends": 0, "events": 0, "torn_files": 0, "write_errors": 0,
                         "lost": 0}
        self._closed = False
        self._cond = threading.Condition()
        self._queued: list[AlarmEvent] = []
        self._submitted = 0  # events submitted / written by the writer thread
        self._written = 0
        self._thread: threading.Thread | None = None

    def _open(self) -> None:
        self._n += 1
        path = self.root / f"alarms-{time.time_ns() // 1000:016d}-{self._n:04d}.arrows"
        self._file = open(path, "xb")
        self._writer = pa.ipc.new_stream(self._file, SCHEMA)

    def _close_segment(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._file.flush()
            sync_fd(self._file.fileno())
            self._file.close()
            self._writer = self._file = None

    def append(self, events: list[AlarmEvent], *, _from_writer: bool = False) -> None:
        """Write ``events`` durably now (one record batch); StorageError if the disk refuses."""
        if not events:
            return
        batch = _batch(events)
        with self._lock:
            if self._closed and not _from_writer:
                raise StorageError("alarm log is closed")
            try:
                if self._writer is None:
                    self._open()
                self._writer.write_batch(batch)
                self._file.flush()
                if self.fsync:
                    sync_fd(self._file.fileno())
                if self._file.tell() >= self.segment_bytes:
                    self._close_segment()
            except OSError as exc:
                raise StorageError(f"alarm log {self.root}: {exc}") from exc
            self.counters["appends"] += 1
            self.counters["events"] += len(events)

    # -- background writer ------------------------------------------------------------
    def submit(self, events: list[AlarmEvent]) -> None:
        """Queue ``events`` for the writer thread (returns at once; see :meth:`flush`).

        The writer appends everything queued as one batch with one fsync (group
        commit). If the disk refuses, it logs, counts ``write_errors`` and retries every
        second; beyond 100,000 waiting events the oldest are dropped (``lost``).
        """
        if not events:
            return
        with self._cond:
            if self._closed:
                raise StorageError("alarm log is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._write_loop,
                                                name="vitalcore-alarm-log", daemon=True)
                self._thread.start()
            self._queued.extend(events)
            self._submitted += len(events)
            over = len(self._queued) - 100_000
            if over > 0:
                del self._queued[:over]
                self.counters["lost"] += over
                self._written += over
            self._cond.notify_all()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every submitted event is written (and fsync'd); False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._written >= target, timeout)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queued or self._closed)
                if not self._queued:
                    return
                events, self._queued = self._queued, []
            try:
                self.append(events, _from_writer=True)
            except StorageError:
                self.counters["write_errors"] += 1
                if self.counters["write_errors"] & (self.counters["write_errors"] - 1) == 0:
                    log.exception("alarm log write failed; retrying")
                with self._cond:
                    self._queued[:0] = events
                    self._cond.wait(1.0)
                continue
            with self._cond:
                self._written += len(events)
                self._cond.notify_all()

    def read(self, t0_us: int, t1_us: int, device_id: int | None = None) -> pa.Table:
        """Events with ``t0_us <= ts_us < t1_us`` (of one device, or all), by seq within file order."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
            paths = sorted(self.root.glob("alarms-*.arrows"))
        batches = []
        torn = 0
        for p in paths:
            try:
                with pa.OSFile(str(p)) as f:
                    reader = pa.ipc.open_stream(f)
                    while True:
                        try:
                            batches.append(reader.read_next_batch())
                        except StopIteration:
                            break
            except (pa.ArrowInvalid, OSError):
                torn += 1  # torn tail of a crashed run: the complete batches are kept
        self.counters["torn_files"] = torn
        table = pa.Table.from_batches(batches, SCHEMA)
        mask = pc.and_(pc.greater_equal(table["ts_us"], t0_us), pc.less(table["ts_us"], t1_us))
        if device_id is not None:
            mask = pc.and_(mask, pc.equal(table["device_id"], pa.scalar(device_id, pa.uint64())))
        return table.filter(mask)

    def close(self) -> None:
        """Write what was submitted, then close the current file. Idempotent."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self._close_segment()
