"""A patient's, a device's or a ward's data over a time range, as Arrow tables.

The history is stored per device (:mod:`vitalcore.storage.history`); a patient's record
is the union of the device data inside each :class:`~vitalcore.clinical.spans.DeviceSpan`
of the patient (device swaps, transfers between wards, transport). :class:`Records`
reads each span's device over the part of the span inside the query, clips the rows to
it and stitches the pieces into one table per kind of data, with ``patient_id`` and
``ward_id`` columns added:

- numerics, status and alarms: one table each;
- waveforms: one table of samples (``ts_us``, physical ``value``) per stream
  :class:`Channel` ``(frame_type, channel)``, e.g. ECG lead II.

Clipping: a numeric, status or alarm row belongs to a span when its ``ts_us`` is in
``[max(t0, start_us), min(t1, end_us))``; a waveform *sample* (not frame) belongs to it
when its own device time is (frames crossing a span boundary are cut). Rows of spans
that overlap in time (two devices bound at once) are all kept; ``device_id`` tells them
apart. Results are ordered by the spans' ``(patient_id, start_us)`` and, within a
patient, by ``ts_us`` (stable: ties keep span order).

See ``docs/history.md``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from ..errors import StorageError, UsageError
from ..protocol import TS_MAX_US, TS_MIN_US, WAVEFORM_TYPES
from ..storage.history import SCHEMAS, samples_of
from .spans import DeviceSpan

__all__ = [
    "AlarmLogSource",
    "AlarmSource",
    "Channel",
    "DeviceHistory",
    "Records",
    "SAMPLE_SCHEMA",
]

#: Columns added in front of every per-patient result (dictionary-encoded strings).
_LABEL = pa.dictionary(pa.int32(), pa.string())
PATIENT_FIELDS = (pa.field("patient_id", _LABEL), pa.field("ward_id", _LABEL))

#: Schema of one waveform stream's samples (device query: without the label columns).
SAMPLE_SCHEMA = pa.schema(
    [("device_id", pa.uint64()), ("ts_us", pa.int64()), ("value", pa.float32())]
)


class Channel(NamedTuple):
    """One waveform stream of a device: wire frame type and channel (e.g. ECG lead II)."""

    frame_type: int
    channel: int


@runtime_checkable
class DeviceHistory(Protocol):
    """Per-device history readers; :class:`~vitalcore.storage.HistoryStore` and
    :class:`~vitalcore.storage.Store` (which adds unflushed data) both are one."""

    def read_numerics(
        self, device_id: int, t0_us: int, t1_us: int, codes: Iterable[int] | None = None
    ) -> pa.Table: ...

    def read_waveforms(
        self,
        device_id: int,
        t0_us: int,
        t1_us: int,
        frame_type: int | None = None,
        channel: int | None = None,
    ) -> pa.Table: ...

    def read_status(self, device_id: int, t0_us: int, t1_us: int) -> pa.Table: ...


@runtime_checkable
class AlarmSource(Protocol):
    """Anything that returns the alarms of some devices in ``[t0_us, t1_us)``.

    ``read`` returns a table with at least ``device_id`` (uint64 or any integer type)
    and ``ts_us`` (int64, µs since the epoch, UTC) columns; its other columns are
    passed through unchanged. ``vitalcore.alarms.AlarmLog``, whose ``read`` has another
    signature, plugs in through :class:`AlarmLogSource`.
    """

    def read(self, device_ids: Sequence[int], t0_us: int, t1_us: int) -> pa.Table: ...


class AlarmLogSource:
    """:class:`AlarmSource` over a log read as ``log.read(t0_us, t1_us, device_id=None)``
    (the signature of ``vitalcore.alarms.AlarmLog.read``)."""

    def __init__(self, log: object) -> None:
        if not callable(getattr(log, "read", None)):
            raise UsageError(f"{type(log).__name__} has no read(t0_us, t1_us, device_id)")
        self.log = log

    def read(self, device_ids: Sequence[int], t0_us: int, t1_us: int) -> pa.Table:
        ids = [int(d) for d in device_ids]
        if len(ids) == 1:
            return self.log.read(t0_us, t1_us, device_id=ids[0])
        t = self.log.read(t0_us, t1_us)
        if not ids:
            return t.slice(0, 0)
        keep = np.isin(t.column("device_id").to_numpy(), np.array(ids, np.uint64))
        return t.filter(pa.array(keep))


class _Piece(NamedTuple):
    """The part of one span inside a query: [lo, hi) of device_id, labelled."""

    patient_id: str | None
    ward_id: str | None
    device_id: int
    lo: int
    hi: int


def _label(value: str | None, n: int) -> pa.DictionaryArray:
    """``n`` copies of ``value`` (null if None) as a dictionary array, without n objects."""
    if value is None:
        return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))
    # safe=False: the indices are all 0, valid by construction (no pass over n indices)
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int32)), pa.array([value], pa.string()), safe=False
    )


def _check_range(t0_us: int, t1_us: int) -> None:
    for name, v in (("t0_us", t0_us), ("t1_us", t1_us)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise UsageError(f"{name} must be an int (µs since the epoch), got {v!r}")
    if not t0_us < t1_us:
        raise UsageError(f"need t0_us < t1_us, got {t0_us}, {t1_us}")


def _pieces(scope: int | Sequence[DeviceSpan], t0_us: int, t1_us: int) -> tuple[list[_Piece], bool]:
    """Validate ``scope`` and cut it to the query: (pieces, labelled).

    A device id gives one unlabelled piece; spans give one labelled piece per span that
    overlaps ``[t0_us, t1_us)``, ordered by (patient_id, start, device_id).
    """
    _check_range(t0_us, t1_us)
    if isinstance(scope, int | np.integer) and not isinstance(scope, bool):
        if not 0 < int(scope) < 2**64:
            raise UsageError(f"device_id must be in 1..2**64-1, got {scope}")
        return [_Piece(None, None, int(scope), t0_us, t1_us)], False
    if isinstance(scope, str | bytes) or not isinstance(scope, Sequence):
        raise UsageError(
            f"scope must be a device id or a sequence of DeviceSpan, got {type(scope).__name__}"
        )
    out = []
    for i, s in enumerate(scope):
        if not isinstance(s, DeviceSpan):
            raise UsageError(f"scope[{i}] is not a DeviceSpan: {s!r}")
        if not isinstance(s.patient_id, str) or not s.patient_id:
            raise UsageError(f"scope[{i}]: patient_id must be a non-empty str, got {s.patient_id!r}")
        if s.ward_id is not None and not isinstance(s.ward_id, str):
            raise UsageError(f"scope[{i}]: ward_id must be a str or None, got {s.ward_id!r}")
        if isinstance(s.device_id, bool) or not isinstance(s.device_id, int | np.integer) or not (
            0 < int(s.device_id) < 2**64
        ):
            raise UsageError(f"scope[{i}]: device_id must be in 1..2**64-1, got {s.device_id!r}")
        end = TS_MAX_US if s.end_us is None else s.end_us
        if isinstance(s.start_us, bool) or not isinstance(s.start_us, int | np.integer) or (
            not isinstance(end, int | np.integer) or not s.start_us < end
        ):
            raise UsageError(f"scope[{i}]: need integer start_us < end_us, got {s.start_us}, {s.end_us}")
        lo, hi = max(t0_us, int(s.start_us), TS_MIN_US), min(t1_us, int(end), TS_MAX_US)
        if lo < hi:
            out.append(_Piece(s.patient_id, s.ward_id, int(s.device_id), lo, hi))
    out.sort(key=lambda p: (p.patient_id, p.lo, p.device_id))
    return out, True


def _overlapping(pieces: list[_Piece]) -> set[str]:
    """Patients two of whose pieces overlap in time (their rows need a merge by ts_us)."""
    out, last = set(), {}
    for p in pieces:
        if p.patient_id in last and p.lo < last[p.patient_id]:
            out.add(p.patient_id)
        last[p.patient_id] = max(last.get(p.patient_id, p.hi), p.hi)
    return out


def _stitch(
    parts: list[tuple[_Piece, pa.Table]], schema: pa.Schema, labelled: bool, merge: set[str]
) -> pa.Table:
    """Concatenate the pieces' tables, label them, keep (patient, ts_us) order."""
    if labelled:
        schema = pa.schema([*PATIENT_FIELDS, *schema])
    if not parts:
        return schema.empty_table()
    tables = []
    for piece, t in parts:
        if labelled:
            t = t.add_column(0, PATIENT_FIELDS[1], _label(piece.ward_id, t.num_rows))
            t = t.add_column(0, PATIENT_FIELDS[0], _label(piece.patient_id, t.num_rows))
        tables.append(t.cast(schema) if t.schema != schema else t)
    if not merge:
        return pa.concat_tables(tables)
    out, i = [], 0
    while i < len(parts):  # a patient's overlapping pieces: one stable sort by ts_us
        j = i
        while j < len(parts) and parts[j][0].patient_id == parts[i][0].patient_id:
            j += 1
        group = pa.concat_tables(tables[i:j])
        if parts[i][0].patient_id in merge:
            order = np.argsort(group.column("ts_us").to_numpy(), kind="stable")
            group = group.take(pa.array(order))
        out.append(group)
        i = j
    return pa.concat_tables(out)


class Records:
    """Query patients', devices' and wards' history, stitched across devices.

    Parameters
    ----------
    history : DeviceHistory
        Where device data is read: a :class:`~vitalcore.storage.HistoryStore`, or a
        :class:`~vitalcore.storage.Store` to include committed, not yet flushed data.
    alarms : AlarmSource, optional
        The alarm log; :meth:`alarms` raises :class:`UsageError` without one.

    Notes
    -----
    Every query takes a *scope*: a device id (int; the device's rows as stored, no
    label columns), or a sequence of :class:`DeviceSpan` (one patient's record, or the
    spans of several patients for a ward view). With spans, every result starts with
    ``patient_id`` and ``ward_id`` columns (``dictionary<int32, string>``; ``ward_id``
    is the span's, null in transport). Times are µs since the epoch (UTC), ranges
    half-open ``[t0_us, t1_us)``; a span with ``end_us=None`` is open-ended.
    """

    def __init__(self, history: DeviceHistory, alarms: AlarmSource | None = None) -> None:
        if not isinstance(history, DeviceHistory):
            raise UsageError(
                "history must have read_numerics, read_waveforms and read_status"
                f" (a HistoryStore or Store), got {type(history).__name__}"
            )
        if alarms is not None and not isinstance(alarms, AlarmSource):
            raise UsageError(f"alarms must have read(device_ids, t0_us, t1_us), got {type(alarms).__name__}")
        if alarms is not None and _first_parameter(alarms.read) == "t0_us":
            raise UsageError(
                f"{type(alarms).__name__}.read takes (t0_us, t1_us, device_id):"
                " pass AlarmLogSource(log) as alarms"
            )
        self.history = history
        self.alarm_source = alarms

    def numerics(
        self,
        scope: int | Sequence[DeviceSpan],
        t0_us: int,
        t1_us: int,
        codes: Iterable[int] | None = None,
    ) -> pa.Table:
        """Numeric rows in ``[t0_us, t1_us)`` (columns of ``SCHEMAS["numerics"]``).

        ``codes`` keeps only these :class:`~vitalcore.protocol.NumericCode` values;
        ``value`` is in the code's unit (``protocol.NUMERIC_UNITS``), NaN when
        unavailable.
        """
        codes = None if codes is None else [int(c) for c in codes]
        pieces, labelled = _pieces(scope, t0_us, t1_us)
        parts = [(p, self.history.read_numerics(p.device_id, p.lo, p.hi, codes)) for p in pieces]
        return _stitch(parts, SCHEMAS["numerics"], labelled, _overlapping(pieces))

    def status(self, scope: int | Sequence[DeviceSpan], t0_us: int, t1_us: int) -> pa.Table:
        """Device status rows in ``[t0_us, t1_us)`` (columns of ``SCHEMAS["status"]``)."""
        pieces, labelled = _pieces(scope, t0_us, t1_us)
        parts = [(p, self.history.read_status(p.device_id, p.lo, p.hi)) for p in pieces]
        return _stitch(parts, SCHEMAS["status"], labelled, _overlapping(pieces))

    def waveforms(
        self,
        scope: int | Sequence[DeviceSpan],
        t0_us: int,
        t1_us: int,
        frame_type: int | None = None,
        channel: int | None = None,
    ) -> dict[Channel, pa.Table]:
        """Waveform samples in ``[t0_us, t1_us)``, one table per stream.

        Returns
        -------
        dict of Channel to pyarrow.Table
            For each stream with samples in the range (optionally only ``frame_type``
            and/or ``channel``): columns ``[patient_id, ward_id,] device_id, ts_us,
            value`` with one row per sample: ``ts_us`` its device time (frame start +
            ``round(k * 1e6 / fs_hz)``), ``value`` float32 in µV (ECG), a.u. (pleth)
            or mmHg (cuff). Keys are sorted.
        """
        if frame_type is not None and frame_type not in WAVEFORM_TYPES:
            raise UsageError(f"frame_type {frame_type} is not a waveform type")
        pieces, labelled = _pieces(scope, t0_us, t1_us)
        per_channel: dict[Channel, list[tuple[_Piece, pa.Table]]] = {}
        for p in pieces:
            frames = self.history.read_waveforms(p.device_id, p.lo, p.hi, frame_type, channel)
            for key, rows in _split_streams(frames):
                ts, values = samples_of(rows, p.lo, p.hi)
                if len(ts):
                    dev = np.full(len(ts), p.device_id, np.uint64)
                    t = pa.table([dev, ts, values], schema=SAMPLE_SCHEMA)
                    per_channel.setdefault(key, []).append((p, t))
        merge = _overlapping(pieces)
        return {
            key: _stitch(per_channel[key], SAMPLE_SCHEMA, labelled, merge)
            for key in sorted(per_channel)
        }

    def alarms(self, scope: int | Sequence[DeviceSpan], t0_us: int, t1_us: int) -> pa.Table:
        """Alarms in ``[t0_us, t1_us)`` from the alarm source, clipped to the spans.

        The columns are the source's, with ``patient_id``/``ward_id`` in front for a
        span scope. Rows the source returns outside the asked device and range are
        dropped (the clip is the span's, whatever the source does). When no span
        overlaps the range, the source is asked once with an empty device list, for
        its schema.

        Raises
        ------
        UsageError
            No alarm source was given.
        StorageError
            The source's table lacks ``device_id`` or ``ts_us``, or the pieces' tables
            do not share one schema.
        """
        if self.alarm_source is None:
            raise UsageError("Records was created without an alarm source")
        pieces, labelled = _pieces(scope, t0_us, t1_us)
        parts, schema = [], None
        for p in pieces:
            t = _alarm_rows(self.alarm_source.read([p.device_id], p.lo, p.hi))
            if schema is None:
                schema = t.schema
            elif t.schema != schema:
                raise StorageError(f"alarm source returned two schemas: {schema} and {t.schema}")
            ts = t.column("ts_us").to_numpy()
            dev = t.column("device_id").to_numpy()
            keep = (ts >= p.lo) & (ts < p.hi) & (dev == p.device_id)
            t = t if keep.all() else t.filter(pa.array(keep))
            order = np.argsort(t.column("ts_us").to_numpy(), kind="stable")
            parts.append((p, t if (np.diff(order) > 0).all() else t.take(pa.array(order))))
        if schema is None:  # nothing overlaps: the source's schema, from an empty device list
            schema = _alarm_rows(self.alarm_source.read([], t0_us, t1_us)).schema
        return _stitch(parts, schema, labelled, _overlapping(pieces))


def _first_parameter(fn: object) -> str | None:
    """Name of the first parameter of a callable, None if it has none or cannot tell."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    return params[0] if params else None


def _alarm_rows(t: object) -> pa.Table:
    """Check what an alarm source returned."""
    if not isinstance(t, pa.Table) or not {"device_id", "ts_us"} <= set(t.column_names):
        raise StorageError(
            f"alarm source must return a pyarrow.Table with device_id and ts_us, got {t!r:.200}"
        )
    return t


def _split_streams(frames: pa.Table) -> Iterable[tuple[Channel, pa.Table]]:
    """(Channel, its frames in ts_us order) for each stream in a waveform read."""
    if frames.num_rows == 0:
        return
    ft = frames.column("frame_type").to_numpy().astype(np.int64)
    ch = frames.column("channel").to_numpy().astype(np.int64)
    key = ft << 8 | ch
    for k in np.unique(key).tolist():
        mask = key == k
        rows = frames if mask.all() else frames.filter(pa.array(mask))
        yield Channel(k >> 8, k & 0xFF), rows
