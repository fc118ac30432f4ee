"""History store: every accepted frame's content as Parquet files on local disk.

Layout (one directory per table, UTC day and device bucket ``device_id % buckets``)::

    root/layout.json
    root/<table>/day=YYYY-MM-DD/bucket=<b>/<lsn_first:020d>-<lsn_last:020d>.parquet
    root/_journal/<lsn_first:020d>-<lsn_last:020d>[.<tag>].txt

Tables: ``waveforms`` (one row per frame, ``samples`` as list<int16>), ``numerics``,
``status``, ``accessories``, ``acks`` and ``commands``, with the columns of
:data:`vitalcore.batch.TABLES` minus the batch-local ``frame``/offset columns;
``waveforms`` adds ``end_ts_us`` (device time just after its last sample). A row goes
to the day of its ``ts_us``; rows in a file are sorted by ``(device_id, ts_us)`` (ties
keep arrival order; declared as the row groups' ``sorting_columns`` since 2026-11-27);
row groups are split only between devices (a device with many rows gets groups of its
own), with statistics on ``device_id`` and the time columns so a reader skips the other
devices' row groups.
``layout.json`` records ``buckets``: a store is never reopened with another value.

Durability: each file is written under a temporary name, fsynced, renamed and its
directory fsynced. Before the files, a journal entry listing them is made durable, so
:meth:`HistoryStore.remove_after` finds everything a crashed write or a WAL range
beyond the last checkpoint left behind without walking the whole tree.

Visibility rule (what makes :meth:`HistoryStore.compact` atomic for readers): within
one directory, a file whose LSN range lies inside another file's range is hidden.
Compaction writes the merged file named by the union of the ranges, renames it into
place (from that instant readers see only it), then deletes the inputs.

See ``docs/storage.md``, "History store (Parquet)".
"""

from __future__ import annotations

import bisect
import ctypes
import datetime as _dt
import functools
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..batch import DecodedBatch, _gather
from ..errors import StorageError, UsageError
from ..protocol import MAX_SAMPLES, TS_MAX_US, TS_MIN_US, WAVEFORM_TYPES
from .fsync import check_after_sync, sync_path

if TYPE_CHECKING:
    import pyarrow.compute as pc

# pyarrow.parquet / .dataset / .compute are imported where used: together they take
# ~0.5 s to import, which users of vitalcore.storage that only need the WAL should not pay.

__all__ = ["HistoryStore", "SCHEMAS", "TABLE_NAMES", "history_table", "samples_of"]

DAY_US = 86_400_000_000
#: Longest possible waveform frame (MAX_SAMPLES at 1 Hz), µs: how far before a query's
#: start a frame overlapping it can begin.
MAX_FRAME_US = MAX_SAMPLES * 1_000_000
MAX_LSN = 10**20 - 1
#: Version of the directory layout recorded in ``root/layout.json``.
LAYOUT_VERSION = 2
MAX_BUCKETS = 4096

_FILE_RE = re.compile(r"^(\d{20})-(\d{20})\.parquet$")
_BUCKET_RE = re.compile(r"^bucket=(\d{1,4})$")
_JOURNAL_RE = re.compile(r"^(\d{20})-(\d{20})(\.[A-Za-z0-9=_.-]+)?\.txt$")

#: Arrow schema of every stored table (also the schema of empty read results).
SCHEMAS: dict[str, pa.Schema] = {
    "waveforms": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("frame_type", pa.uint8()),
            ("channel", pa.uint8()),
            ("seq", pa.uint32()),
            ("ts_us", pa.int64()),
            ("end_ts_us", pa.int64()),
            ("fs_hz", pa.uint16()),
            ("gain", pa.float32()),
            ("offset", pa.float32()),
            ("n_samples", pa.uint32()),
            ("samples", pa.list_(pa.int16())),
        ]
    ),
    "numerics": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("seq", pa.uint32()),
            ("ts_us", pa.int64()),
            ("code", pa.uint8()),
            ("status", pa.uint8()),
            ("value", pa.float32()),
        ]
    ),
    "status": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("seq", pa.uint32()),
            ("ts_us", pa.int64()),
            ("battery", pa.uint8()),
            ("flags", pa.uint8()),
            ("carrier", pa.uint8()),
            ("rssi", pa.int8()),
            ("leads_off", pa.uint16()),
            ("fault", pa.uint16()),
            ("powered_s", pa.uint32()),
            ("n_accessories", pa.uint8()),
        ]
    ),
    "accessories": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("ts_us", pa.int64()),
            ("kind", pa.uint8()),
            ("serial", pa.string()),
            ("powered_s", pa.uint32()),
        ]
    ),
    "acks": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("seq", pa.uint32()),
            ("ts_us", pa.int64()),
            ("command_id", pa.uint32()),
            ("kind", pa.uint8()),
            ("status", pa.uint8()),
            ("detail", pa.uint16()),
        ]
    ),
    "commands": pa.schema(
        [
            ("device_id", pa.uint64()),
            ("seq", pa.uint32()),
            ("ts_us", pa.int64()),
            ("command_id", pa.uint32()),
            ("kind", pa.uint8()),
            ("arg", pa.uint32()),
        ]
    ),
}
TABLE_NAMES = tuple(SCHEMAS)

# Encodings chosen by measurement (docs/storage.md): the samples compress best as
# BYTE_STREAM_SPLIT + zstd (int16 is stored as INT32, whose two sign bytes then
# compress to almost nothing); timestamps and sequence numbers are sorted or nearly,
# so DELTA_BINARY_PACKED. No dictionaries: zstd removes the per-file constants
# (device, stream, fs, gain) as well, and skipping them encodes ~20 % faster.
_DELTA = ("seq", "ts_us", "end_ts_us", "command_id", "powered_s")
_SORT_KEYS = {
    "waveforms": ("ts_us", "frame_type", "channel", "seq"),
    "numerics": ("ts_us", "code"),
    "accessories": ("ts_us", "kind"),
}


def _writer_options(table: str, level: int) -> tuple[dict, int]:
    """(``ParquetWriter`` keyword arguments, maximum rows per row group) of ``table``.

    Waveform row groups hold at most 16,384 frames (68 min of one stream at 4 frames/s),
    so an hour's read decodes little more than it returns.
    """
    schema = SCHEMAS[table]
    encodings = {c: "DELTA_BINARY_PACKED" for c in _DELTA if c in schema.names}
    if table == "waveforms":
        encodings["samples.list.element"] = "BYTE_STREAM_SPLIT"
    if table == "numerics":
        encodings["value"] = "BYTE_STREAM_SPLIT"
    stats = ["device_id", "ts_us", "end_ts_us"] if table == "waveforms" else ["device_id", "ts_us"]
    options = {
        "compression": "zstd",
        "compression_level": level,
        "use_dictionary": False,
        "column_encoding": encodings,
        "write_statistics": stats,
        "sorting_columns": _sorting_columns(table),
    }
    return options, 16_384 if table == "waveforms" else 1 << 20


#: Columns the rows of every file are sorted by. Files written since the footer
#: declares it (``sorting_columns`` of each row group) are read by bisection over the
#: row groups and with an early stop; older files hold the same order without saying so
#: and are read without relying on it (every row group's statistics are checked).
_SORTED_BY = ("device_id", "ts_us")


def _sorting_columns(table: str) -> list:
    """``pyarrow.parquet.SortingColumn`` list declaring :data:`_SORTED_BY` for ``table``.

    The indices are Parquet leaf columns: equal to the Arrow field indices because the
    only nested column (``samples``) comes last.
    """
    import pyarrow.parquet as pq

    return [pq.SortingColumn(SCHEMAS[table].get_field_index(c)) for c in _SORTED_BY]


def _group_bounds(device_id: np.ndarray, min_rows: int) -> list[int]:
    """Row offsets (from 0 to ``len(device_id)``) at which to start a new row group.

    ``device_id`` is sorted; groups only start where the device changes. A device with
    at least ``min_rows`` rows gets row groups of its own (pruned by the ``device_id``
    statistics); consecutive smaller devices share a group until it reaches
    ``min_rows``, since every row group costs ~0.3 ms to encode (measured: one group
    per device made one-minute flushes of 300 devices ~40 % slower).
    """
    n = len(device_id)
    starts = [0, *(np.flatnonzero(device_id[1:] != device_id[:-1]) + 1).tolist()]
    bounds = [0]
    for lo, hi in pairwise([*starts, n]):
        if lo > bounds[-1] and (lo - bounds[-1] >= min_rows or hi - lo >= min_rows):
            bounds.append(lo)
    if n > 0:
        bounds.append(n)
    return bounds


#: Rows from which a device's rows start a row group of their own (see _group_bounds).
_MIN_GROUP_ROWS = {"waveforms": 4096}
_MIN_GROUP_ROWS_OTHER = 8192


def _lex_sorted(keys: Sequence[np.ndarray]) -> bool:
    """Whether rows are sorted by ``keys`` (primary first), ascending, ties allowed."""
    undecided = None  # pairs (i, i + 1) equal in every key so far
    for k in keys:
        a, b = k[:-1], k[1:]
        wrong = a > b if undecided is None else (a > b) & undecided
        if wrong.any():
            return False
        undecided = a == b if undecided is None else undecided & (a == b)
        if not undecided.any():
            return True
    return True


def _write_parquet(t: pa.Table, where: Path, table: str, level: int) -> None:
    """Write ``t`` (sorted by device_id) to ``where``, in row groups split at devices."""
    import pyarrow.parquet as pq

    options, group_rows = _writer_options(table, level)
    min_rows = _MIN_GROUP_ROWS.get(table, _MIN_GROUP_ROWS_OTHER)
    bounds = _group_bounds(t.column("device_id").to_numpy(), min_rows)
    with pq.ParquetWriter(where, SCHEMAS[table], **options) as writer:
        for lo, hi in pairwise(bounds):
            writer.write_table(t.slice(lo, hi - lo), row_group_size=group_rows)


def _day_name(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def _parse_day(day: _dt.date | str) -> str:
    if isinstance(day, _dt.datetime):
        raise UsageError("day must be a date or 'YYYY-MM-DD', not a datetime")
    if isinstance(day, _dt.date):
        return day.isoformat()
    try:
        return _dt.date.fromisoformat(day).isoformat()
    except (TypeError, ValueError):
        raise UsageError(f"day must be a date or 'YYYY-MM-DD', got {day!r}") from None


def _lsn_name(first: int, last: int) -> str:
    return f"{first:020d}-{last:020d}"



@functools.cache
def _libc_syncfs():
    """libc's ``syncfs(fd)`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


def _waveform_table(batch: DecodedBatch, order: np.ndarray) -> pa.Table:
    """The stored waveform table of ``batch``, rows in ``order``, built from numpy.

    One gather of the samples into row order and zero-copy Arrow arrays over it: much
    faster than ``batch.to_arrow("waveforms").take(order)`` on a list column.
    """
    w = batch.tables["waveforms"]
    n = w["n_samples"][order]
    start = w["sample_start"]
    if (w["fs_hz"] < 1).any() or (start < 0).any() or (start + w["n_samples"] > len(batch.samples)).any():
        raise UsageError("inconsistent waveform rows: fs_hz < 1 or samples outside batch.samples")
    samples, starts = _gather(batch.samples, w["sample_start"][order], n)
    if len(samples) >= 2**31:
        raise UsageError("a batch holds at most 2**31 - 1 samples per write")
    offsets = np.empty(len(n) + 1, np.int32)
    offsets[0] = 0
    np.cumsum(n, out=offsets[1:])
    ts = w["ts_us"][order]
    end = ts + np.round(n * (1e6 / w["fs_hz"][order])).astype(np.int64)
    arrays = {c: pa.array(w[c][order]) for c in SCHEMAS["waveforms"].names if c in w}
    arrays["end_ts_us"] = pa.array(end)
    arrays["samples"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(samples))
    return pa.table([arrays[c] for c in SCHEMAS["waveforms"].names], schema=SCHEMAS["waveforms"])


def history_table(batch: DecodedBatch, table: str) -> pa.Table:
    """Rows of one table of ``batch`` in the stored schema ``SCHEMAS[table]``, arrival order.

    What :meth:`HistoryStore.write` stores, without writing it: the store uses it to
    answer queries over data not yet flushed.
    """
    order = np.arange(len(batch.tables[table]["ts_us"]))
    if table == "waveforms":
        return _waveform_table(batch, order)
    t = batch.to_arrow(table).drop_columns(["frame"])
    return t.select(SCHEMAS[table].names).cast(SCHEMAS[table])


def _flat_samples(t: pa.Table) -> list[np.ndarray]:
    """The ``samples`` column's values, one zero-copy int16 array per chunk, in order."""
    return [c.flatten().to_numpy(zero_copy_only=False) for c in t.column("samples").chunks]


#: Bound on |ts_us| below which the fast path of samples_of does its integer arithmetic
#: (frame times, range ends, offsets of a day of samples all stay far from int64 limits).
_FAST_TS_LIMIT = 2**61


def samples_of(t: pa.Table, t0_us: int, t1_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten waveform rows (one stream, sorted by ts_us) into per-sample arrays.

    Returns ``(ts_us int64, values float32)`` for samples in [t0_us, t1_us): the device
    time of each sample is its frame's ts_us + k * 1e6 / fs_hz, rounded; values are
    physical (µV for ECG, mmHg for cuff, a.u. for pleth).
    """
    if t.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    n = t.column("n_samples").to_numpy().astype(np.int64)
    starts = np.zeros(len(n), np.int64)
    np.cumsum(n[:-1], out=starts[1:])
    fs_hz = t.column("fs_hz").to_numpy()
    gain_col, offset_col = t.column("gain").to_numpy(), t.column("offset").to_numpy()
    frame_ts = t.column("ts_us").to_numpy()
    fs0, gain0, offset0 = fs_hz[0], gain_col[0], offset_col[0]
    if (
        1_000_000 % int(fs0) == 0
        and (fs_hz == fs0).all()
        and (gain_col == gain0).all()
        and (offset_col == offset0).all()
    ):
        # The usual stream: one fs dividing 1 s in whole µs, one scale. Sample k of
        # frame f is at ts_f + k * step exactly, so the per-sample frame index and float
        # arithmetic of the general path are not needed (same results).
        step = 1_000_000 // int(fs0)
        fast = _samples_in_one_run(
            _flat_samples(t), n, starts, frame_ts, step, gain0, offset0, t0_us, t1_us
        )
        if fast is not None:
            return fast
        raw = np.concatenate(_flat_samples(t))
        ts = np.repeat(frame_ts - starts * step, n)
        ts += np.arange(len(raw), dtype=np.int64) * step
        values = raw.astype(np.float32)
        values *= gain0
        values += offset0
        if len(ts) and t0_us <= ts.min() and ts.max() < t1_us:
            return ts, values
        keep = (ts >= t0_us) & (ts < t1_us)
        return ts[keep], values[keep]
    raw = np.concatenate(_flat_samples(t))
    frame = np.repeat(np.arange(len(n)), n)
    k = np.arange(len(raw)) - starts[frame]
    fs = fs_hz.astype(np.float64)
    ts = frame_ts[frame] + np.round(k * (1e6 / fs[frame])).astype(np.int64)
    gain = gain_col[frame]
    offset = offset_col[frame]
    values = raw.astype(np.float32) * gain + offset
    keep = (ts >= t0_us) & (ts < t1_us)
    return ts[keep], values[keep]


def _samples_in_one_run(
    chunks: list[np.ndarray],
    n: np.ndarray,
    starts: np.ndarray,
    frame_ts: np.ndarray,
    step: int,
    gain: np.float32,
    offset: np.float32,
    t0_us: int,
    t1_us: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """samples_of's result when the kept samples are one run with evenly spaced times.

    That is the usual read: frames back to back (frame f starts where f - 1 ends, so
    sample ``g`` of the flattened stream is at ``base + g * step`` for one ``base``), and
    only the first and last frames cut by the range. Frame f keeps its samples
    ``k in [ceil((t0 - ts_f) / step), ceil((t1 - ts_f) / step))`` (the same condition as
    ``t0 <= ts_f + k * step < t1``); when the kept samples of all frames form one run
    ``[g0, g1)`` of the flattened stream, the times are one ``arange`` and the values one
    scaling of that run, written once, without per-sample masks or copies. Returns None
    when that does not hold (gaps, overlaps, extreme times): the caller takes the
    general path.
    """
    if (
        frame_ts.min() < -_FAST_TS_LIMIT
        or frame_ts.max() > _FAST_TS_LIMIT
        or n.sum() > _FAST_TS_LIMIT // step
    ):
        return None
    t0 = min(max(t0_us, -2 * _FAST_TS_LIMIT), 2 * _FAST_TS_LIMIT)
    t1 = min(max(t1_us, -2 * _FAST_TS_LIMIT), 2 * _FAST_TS_LIMIT)
    lo = np.clip(-((frame_ts - t0) // step), 0, n)  # ceil((t0 - ts_f) / step), clipped
    hi = np.clip(-((frame_ts - t1) // step), lo, n)
    kept = np.flatnonzero(hi > lo)
    if len(kept) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    base = frame_ts[kept] - starts[kept] * step
    g0 = int(starts[kept[0]] + lo[kept[0]])
    g1 = int(starts[kept[-1]] + hi[kept[-1]])
    if int((hi - lo).sum()) != g1 - g0 or (base != base[0]).any():
        return None
    first = int(base[0]) + g0 * step
    ts = np.arange(first, first + (g1 - g0) * step, step, dtype=np.int64)
    values = np.empty(g1 - g0, np.float32)
    at = 0  # flattened index of the current chunk's first sample
    for raw in chunks:
        a, b = max(g0, at), min(g1, at + len(raw))
        if a < b:
            np.multiply(raw[a - at : b - at], gain, out=values[a - g0 : b - g0], dtype=np.float32)
        at += len(raw)
    values += offset
    return ts, values


def _makedirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; return the directories that got a new entry."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    grown = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        grown.append(d.parent)
    return grown


def _makedirs_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent that got a new entry."""
    for parent in _makedirs(path):
        sync_path(parent)


def _write_durable(path: Path, write, fsync: bool = True) -> None:
    """``write(tmp_path)``, fsync, rename to ``path``; the directory fsync is the caller's."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        if fsync:
            sync_path(tmp)
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stale_temporaries(d: Path, names: Iterable[str]) -> list[str]:
    """Temporary files in ``d`` older than an hour: left by a crash, not being written."""
    limit = time.time() - 3600
    out = []
    for n in names:
        if n.startswith(".") and n.endswith(".tmp"):
            try:
                if (d / n).stat().st_mtime < limit:
                    out.append(n)
            except FileNotFoundError:
                continue
    return out


def _visible(names: Iterable[str]) -> tuple[list[tuple[int, int, str]], list[str]]:
    """Split Parquet file names of one directory into visible (first, last, name) and hidden.

    A file is hidden when another file's LSN range contains its range.
    """
    files = []
    for name in names:
        m = _FILE_RE.match(name)
        if m:
            files.append((int(m[1]), int(m[2]), name))
    files.sort(key=lambda f: (f[0], -f[1]))
    visible, hidden = [], []
    reach = -1
    for first, last, name in files:
        if last <= reach:
            hidden.append(name)
        else:
            visible.append((first, last, name))
            reach = last
    return visible, hidden


class _NoStatistics(Exception):
    """A row group without min/max statistics where a bisection needs them."""


#: Rows per batch when a read of a sorted file may stop early: small enough that the
#: decode stops soon after the range's end, large enough to keep per-batch costs low
#: (measured: 4,096 frames decode as fast as whole row groups).
_BATCH_ROWS = {"waveforms": 4096}
_BATCH_ROWS_OTHER = 65_536


class _Footer:
    """A file's parsed Parquet footer and the row-group pruning reads do with it.

    ``sorted`` is True when the file declares its rows sorted by ``(device_id, ts_us)``
    (``sorting_columns`` of its first row group; one writer writes every group with
    the same properties). Then the row groups of one device are found by bisection and
    a read can stop at the first row past its range. Otherwise every row group's
    statistics are checked and the selected groups are read whole.
    """

    __slots__ = ("metadata", "columns", "sorted", "size")

    def __init__(self, metadata) -> None:
        import pyarrow.parquet as pq

        self.metadata = metadata
        self.size = metadata.serialized_size
        schema = metadata.schema
        self.columns = {schema.column(j).path: j for j in range(metadata.num_columns)}
        declared = ()
        if metadata.num_row_groups and all(c in self.columns for c in _SORTED_BY):
            declared = tuple(metadata.row_group(0).sorting_columns)[: len(_SORTED_BY)]
        want = tuple(pq.SortingColumn(self.columns[c]) for c in _SORTED_BY if c in self.columns)
        self.sorted = len(want) == len(_SORTED_BY) and declared == want

    def minmax(self, group: int, column: str) -> tuple[int, int] | None:
        """(min, max) statistics of ``column`` in row group ``group``; None if unknown."""
        j = self.columns.get(column)
        if j is None:
            return None
        stats = self.metadata.row_group(group).column(j).statistics
        if stats is None or not stats.has_min_max:
            return None
        return stats.min, stats.max

    def row_groups(
        self, table: str, device_id: int | Sequence[int] | None, t0_us: int, t1_us: int
    ) -> list[int]:
        """Row groups that may hold rows of ``device_id`` (None: any) in the range.

        Waveforms: ``ts_us < t1_us`` and ``end_ts_us > t0_us`` (a frame overlapping
        it); other tables: ``t0_us <= ts_us < t1_us``. A group without statistics for
        a column is kept (it may match).
        """
        lo, hi = 0, self.metadata.num_row_groups
        single = isinstance(device_id, int | np.integer)
        if self.sorted and single:
            try:  # device_min and device_max never decrease from one group to the next
                lo = _first_true(lo, hi, lambda g: self._stat(g, "device_id")[1] >= device_id)
                hi = _first_true(lo, hi, lambda g: self._stat(g, "device_id")[0] > device_id)
            except _NoStatistics:
                lo, hi = 0, self.metadata.num_row_groups
        wanted = None if device_id is None or single else sorted({int(d) for d in device_id})
        out = []
        for g in range(lo, hi):
            if device_id is not None:
                dev = self.minmax(g, "device_id")
                if dev is not None:
                    if single and not dev[0] <= device_id <= dev[1]:
                        continue
                    if wanted is not None:
                        k = bisect.bisect_left(wanted, dev[0])
                        if k == len(wanted) or wanted[k] > dev[1]:
                            continue
            ts = self.minmax(g, "ts_us")
            if ts is not None and ts[0] >= t1_us:
                continue
            if table == "waveforms":
                end = self.minmax(g, "end_ts_us")
                if end is not None and end[1] <= t0_us:
                    continue
            elif ts is not None and ts[1] < t0_us:
                continue
            out.append(g)
        return out

    def _stat(self, group: int, column: str) -> tuple[int, int]:
        mm = self.minmax(group, column)
        if mm is None:
            raise _NoStatistics(column)
        return mm


def _small_int(value: object, name: str) -> int:
    """``value`` as an int in 0..255 (a wire code or channel), else UsageError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= 255:
        raise UsageError(f"{name} must be an int in 0..255, got {value!r}")
    return int(value)


def _device_ids(device_id: object) -> int | list[int] | None:
    """A read's device scope as an int, a list of ints or None; UsageError if bad."""
    if device_id is None:
        return None
    ids = [device_id] if isinstance(device_id, int | np.integer) else device_id
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise UsageError(f"device_id must be an int, a sequence of ints or None, got {device_id!r}")
    out = []
    for d in ids:
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or not 0 <= d < 2**64:
            raise UsageError(f"device ids must be ints in 0..2**64-1, got {d!r}")
        out.append(int(d))
    return out[0] if isinstance(device_id, int | np.integer) else out


def _keep(
    t: pa.Table,
    table: str,
    device_id: int | list[int] | None,
    t0_us: int,
    t1_us: int,
    where: dict[str, list[int]] | None,
) -> pa.Table | None:
    """The rows of ``t`` of the devices, the range and the ``where`` values; None if none.

    The same condition as the scan filter it replaces (waveforms: ``ts_us < t1_us`` and
    ``end_ts_us > t0_us``; others: ``t0_us <= ts_us < t1_us``), evaluated with numpy.
    Rows that form one run are returned as a zero-copy slice, others are copied.
    """
    if t.num_rows == 0:
        return None
    ts = t.column("ts_us").to_numpy()
    if table == "waveforms":
        mask = (ts < t1_us) & (t.column("end_ts_us").to_numpy() > t0_us)
    else:
        mask = (ts >= t0_us) & (ts < t1_us)
    if device_id is not None:
        dev = t.column("device_id").to_numpy()
        if isinstance(device_id, int):
            mask &= dev == np.uint64(device_id)
        else:
            mask &= np.isin(dev, np.array(device_id, np.uint64))
    for column, values in (where or {}).items():
        v = t.column(column).to_numpy()
        mask &= (v == values[0]) if len(values) == 1 else np.isin(v, values)
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return None
    if len(rows) == t.num_rows:
        return t
    if rows[-1] - rows[0] + 1 == len(rows):
        return t.slice(int(rows[0]), len(rows))
    return t.filter(pa.array(mask))


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """``t`` with exactly the columns and types of ``schema``.

    Parquet names a list's items ``element`` where the stored schema says ``item``:
    such a column is renamed by a zero-copy view. A missing column is a StorageError.
    """
    if t.column_names != schema.names:
        missing = set(schema.names) - set(t.column_names)
        if missing:
            raise StorageError(f"stored rows lack column(s) {sorted(missing)}")
        t = t.select(schema.names)
    if all(str(f.type) == str(g.type) for f, g in zip(t.schema, schema, strict=True)):
        return t
    columns = []
    for column, field in zip(t.columns, schema, strict=True):
        if str(column.type) != str(field.type):
            if column.type.equals(field.type):  # same layout, other item name
                column = pa.chunked_array([c.view(field.type) for c in column.chunks], field.type)
            else:
                column = column.cast(field.type)
        columns.append(column)
    return pa.table(columns, schema=schema)


def _first_true(lo: int, hi: int, pred) -> int:
    """The first index in [lo, hi) where ``pred`` (False then True) holds, or ``hi``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


class HistoryStore:
    """Columnar history of decoded frames, as zstd-compressed Parquet on local disk.

    Parameters
    ----------
    root : path
        Directory of the store (created if missing).
    compression_level : int
        zstd level (1-22). 3 is the measured balance of flush speed and size.
    threads : int
        Files encoded (and in "fsync" mode fsynced) in parallel by :meth:`write`;
        Parquet encoding and fsync release the GIL, so more threads than cores overlap
        the disk waits with encoding.
    sync : {"fsync", "syncfs", "none"}
        How :meth:`write` makes its files durable before returning. ``"fsync"``: every
        file fsynced by the thread that wrote it, then every directory by a pool of
        ``io_threads`` threads (the file system commits concurrent fsyncs together). ``"syncfs"``: one Linux
        ``syncfs`` for the files and one for the renames (fastest; reports write-back
        errors only on Linux >= 5.8; it also flushes other dirty data of that file
        system). ``"none"``: no durability, for tests and encoder benchmarks only.
    io_threads : int
        Threads fsyncing directories in ``"fsync"`` mode.
    buckets : int
        Device buckets per table and day (1..4096): device ``d`` goes to bucket
        ``d % buckets``, so a flush writes at most ``buckets`` files per table and day.
        Recorded in ``root/layout.json`` when the store is created; reopening it with
        another value raises :class:`UsageError`.
    footer_cache_bytes : int
        Bound on the Parquet footers (metadata and row-group statistics) reads keep
        parsed in memory, counted in serialized footer bytes; least recently used out
        first, 0 disables the cache. Parsed, a footer takes ~11x its serialized size
        (measured: a full-day ECG file of 19 devices, 418 row groups, 340 KB
        serialized, takes 3.6 MB), so the default 4 MiB holds ~12 such files or ~450
        numerics day files in ~45 MB. A cached footer is reused only while the file's
        inode, size and mtime are unchanged.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        compression_level: int = 3,
        threads: int = 8,
        sync: str = "fsync",
        io_threads: int = 16,
        buckets: int = 16,
        footer_cache_bytes: int = 4 << 20,
    ) -> None:
        if not 1 <= compression_level <= 22:
            raise UsageError(f"compression_level must be in 1..22, got {compression_level}")
        if threads < 1 or io_threads < 1:
            raise UsageError(f"threads and io_threads must be >= 1, got {threads}, {io_threads}")
        if sync not in ("fsync", "syncfs", "none"):
            raise UsageError(f"sync must be 'fsync', 'syncfs' or 'none', got {sync!r}")
        if sync == "syncfs" and _libc_syncfs() is None:
            raise UsageError("sync='syncfs' needs Linux (libc syncfs)")
        if isinstance(buckets, bool) or not isinstance(buckets, int | np.integer):
            raise UsageError(f"buckets must be an int, got {type(buckets).__name__}")
        if not 1 <= buckets <= MAX_BUCKETS:
            raise UsageError(f"buckets must be in 1..{MAX_BUCKETS}, got {buckets}")
        if (
            isinstance(footer_cache_bytes, bool)
            or not isinstance(footer_cache_bytes, int)
            or footer_cache_bytes < 0
        ):
            raise UsageError(f"footer_cache_bytes must be an int >= 0, got {footer_cache_bytes!r}")
        self.footer_cache_bytes = footer_cache_bytes
        # path -> ((inode, size, mtime_ns), fragment with its footer loaded, footer bytes)
        self._footers: OrderedDict[str, tuple[tuple[int, int, int], object, int]] = OrderedDict()
        self._footers_lock = threading.Lock()
        self.footer_stats = {"hits": 0, "misses": 0, "files": 0, "bytes": 0}
        self.buckets = int(buckets)
        self.root = Path(root)
        self.compression_level = compression_level
        self.threads = threads
        self.io_threads = io_threads
        self.sync = sync
        self._durable = sync != "none"  # journal, compaction, cleanup: plain fsync
        try:
            _makedirs_durable(self.root / "_journal")
        except OSError as exc:
            raise StorageError(f"cannot create history store at {self.root}: {exc}") from exc
        self._check_layout()

    def _check_layout(self) -> None:
        """Read ``root/layout.json`` (write it for a new store) and compare ``buckets``.

        Raises
        ------
        UsageError
            The store was created with another ``buckets`` value.
        StorageError
            ``layout.json`` is unreadable or not ours, or it is missing from a store that
            already holds tables (written by the older per-device layout).
        """
        path = self.root / "layout.json"
        if not path.exists():
            old = [t for t in TABLE_NAMES if (self.root / t).is_dir() and os.listdir(self.root / t)]
            if old:
                raise StorageError(
                    f"{self.root} holds {old[0]!r} but no layout.json: it was written with the"
                    " per-device layout (device=<id> directories), which this version cannot read"
                )
            layout = {"format": "vitalcore-history", "version": LAYOUT_VERSION, "buckets": self.buckets}
            text = json.dumps(layout, indent=1) + "\n"
            tmp = path.with_name(f".layout.json.{uuid.uuid4().hex[:8]}.tmp")
            try:
                tmp.write_text(text, "ascii")
                if self._durable:
                    sync_path(tmp)
                try:
                    os.link(tmp, path)  # never replaces a layout another process just wrote
                except FileExistsError:
                    pass
                if self._durable:
                    sync_path(self.root)
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
        try:
            layout = json.loads(path.read_text("ascii"))
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        if (
            not isinstance(layout, dict)
            or layout.get("format") != "vitalcore-history"
            or layout.get("version") != LAYOUT_VERSION
            or type(layout.get("buckets")) is not int
            or not 1 <= layout["buckets"] <= MAX_BUCKETS
        ):
            raise StorageError(f"{path} is not a vitalcore history layout, version {LAYOUT_VERSION}: {layout!r}")
        if layout["buckets"] != self.buckets:
            raise UsageError(
                f"{self.root} was created with buckets={layout['buckets']}, opened with"
                f" buckets={self.buckets}: the layout cannot change (pass buckets={layout['buckets']})"
            )

    # -- writing ---------------------------------------------------------------------------
    def write(self, batch: DecodedBatch, lsn_first: int, lsn_last: int) -> list[Path]:
        """Write a batch's tables as Parquet files, one per (table, UTC day, device bucket).

        Parameters
        ----------
        batch : DecodedBatch
            Frames already de-duplicated; every table with rows is written.
        lsn_first, lsn_last : int
            WAL log sequence numbers the batch covers (inclusive); they name the files.

        Returns
        -------
        list of Path
            The files written, durable when this returns.

        Raises
        ------
        UsageError
            Bad LSN range or not a DecodedBatch.
        StorageError
            A file of this LSN range already exists, or the disk refused. Files of
            this call that were already renamed into place are removed again.
        """
        if not isinstance(batch, DecodedBatch):
            raise UsageError(f"write takes a DecodedBatch, got {type(batch).__name__}")
        if not (0 <= lsn_first <= lsn_last <= MAX_LSN):
            raise UsageError(f"need 0 <= lsn_first <= lsn_last <= 10**20-1, got {lsn_first}, {lsn_last}")
        name = _lsn_name(lsn_first, lsn_last)
        parts = [
            (self.root / table / f"day={_day_name(day)}" / f"bucket={b}" / f"{name}.parquet", table, t)
            for table in TABLE_NAMES
            for day, b, t in self._partitions(batch, table)
        ]
        if not parts:
            return []
        taken = [p for p, _, _ in parts if p.exists()]
        if taken:
            raise StorageError(f"LSN range {lsn_first}-{lsn_last} already written: {taken[0]}")
        journal = self.root / "_journal" / f"{name}.txt"
        self._journal(journal, [p for p, _, _ in parts])
        temps = [p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp") for p, _, _ in parts]
        try:
            leaves = sorted({p.parent for p, _, _ in parts})
            grown = {g for d in leaves for g in _makedirs(d)}  # new day=/bucket= entries
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(self._encode, temps, *zip(*parts, strict=True)))
            if self.sync == "syncfs":
                self._make_durable(temps)
            for tmp, (path, _, _) in zip(temps, parts, strict=True):
                os.rename(tmp, path)
            self._make_durable(sorted(grown.union(leaves)))
        except (OSError, pa.ArrowException) as exc:
            for p in temps + [p for p, _, _ in parts]:
                p.unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
            raise StorageError(f"writing LSN range {lsn_first}-{lsn_last} failed: {exc}") from exc
        return [p for p, _, _ in parts]

    def _partitions(self, batch: DecodedBatch, table: str) -> Iterator[tuple[int, int, pa.Table]]:
        """(day, bucket, rows sorted by device_id and ts) of one table of a batch."""
        cols = batch.tables[table]
        n = len(cols["ts_us"])
        if n == 0:
            return
        day = cols["ts_us"] // DAY_US
        dev = cols["device_id"]
        bucket = dev % np.uint64(self.buckets)
        order = np.lexsort((cols["ts_us"], dev, bucket, day))  # stable: ties keep arrival order
        day, bucket = day[order], bucket[order]
        if table == "waveforms":
            t = _waveform_table(batch, order)
        else:
            t = history_table(batch, table).take(pa.array(order))
        cut = np.flatnonzero((day[1:] != day[:-1]) | (bucket[1:] != bucket[:-1])) + 1
        for lo, hi in pairwise([0, *cut.tolist(), n]):
            yield int(day[lo]), int(bucket[lo]), t.slice(lo, hi - lo)

    def _encode(self, tmp: Path, path: Path, table: str, t: pa.Table) -> None:
        """Write one temporary file; in "fsync" mode fsync it here, so the I/O waits of
        one thread overlap the encoding of the others."""
        _write_parquet(t, tmp, table, self.compression_level)
        if self.sync == "fsync":
            sync_path(tmp)

    def _make_durable(self, paths: Sequence[Path]) -> None:
        """Flush files (or directories) to disk as the ``sync`` mode says."""
        if self.sync == "fsync":
            with ThreadPoolExecutor(min(self.io_threads, len(paths))) as pool:
                list(pool.map(sync_path, paths))
        elif self.sync == "syncfs":
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _libc_syncfs()(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"syncfs: {os.strerror(err)}")
                check_after_sync(fd)
            finally:
                os.close(fd)

    def _journal(self, journal: Path, paths: Sequence[Path], exist_ok: bool = False) -> None:
        if journal.exists() and not exist_ok:
            raise StorageError(f"journal {journal.name} exists: LSN range already written")
        text = "".join(f"{p.relative_to(self.root).as_posix()}\n" for p in paths)
        try:
            _write_durable(journal, lambda tmp: tmp.write_text(text, "ascii"), self._durable)
            if self._durable:
                sync_path(journal.parent)
        except OSError as exc:
            raise StorageError(f"cannot write journal {journal}: {exc}") from exc

    # -- restart: LSN ranges ------------------------------------------------------------------
    def _journals(self) -> list[tuple[int, int, Path]]:
        out = []
        for entry in os.scandir(self.root / "_journal"):
            m = _JOURNAL_RE.match(entry.name)
            if m:
                out.append((int(m[1]), int(m[2]), Path(entry.path)))
        return sorted(out)

    def _all_files(self) -> Iterator[tuple[int, int, Path]]:
        for table in TABLE_NAMES:
            for dirpath, _, names in os.walk(self.root / table):
                for name in names:
                    m = _FILE_RE.match(name)
                    if m:
                        yield int(m[1]), int(m[2]), Path(dirpath) / name

    def files_after(self, lsn: int, *, full_scan: bool = False) -> list[Path]:
        """Files holding rows of an LSN above ``lsn`` (their range ends after it).

        By default the journal is read (cost independent of the history's size);
        ``full_scan=True`` walks every directory instead, for a store whose journal
        was lost.
        """
        return sorted(p for _, _, p in self._ranges_after(lsn, full_scan))

    def _ranges_after(self, lsn: int, full_scan: bool) -> list[tuple[int, int, Path]]:
        if full_scan:
            return [f for f in self._all_files() if f[1] > lsn]
        out = []
        for _, last, journal in self._journals():
            if last <= lsn:
                continue
            for line in journal.read_text("ascii").splitlines():
                path = self.root / line
                m = _FILE_RE.match(path.name)
                if m and path.exists():
                    out.append((int(m[1]), int(m[2]), path))
        return out

    def remove_after(self, lsn: int, *, full_scan: bool = False) -> list[Path]:
        """Delete every file holding an LSN above ``lsn`` (the last checkpoint).

        Called on restart before the WAL is replayed from ``lsn + 1``, so replayed
        frames cannot be stored twice; only the store's single writer may call it (it
        deletes what a running flush writes). Also removes temporary files left by a
        crash in the affected directories and in ``_journal/``, and forgets journal
        entries up to ``lsn``.

        Raises
        ------
        StorageError
            A file's range straddles ``lsn`` (it holds rows on both sides, so neither
            keeping nor deleting it is right). Nothing is deleted.
        """
        found = self._ranges_after(lsn, full_scan)
        straddling = [p for first, _, p in found if first <= lsn]
        if straddling:
            raise StorageError(
                f"{len(straddling)} file(s) hold LSNs on both sides of {lsn}, e.g. {straddling[0]}:"
                " compaction must only merge checkpointed files (compact(max_lsn=...))"
            )
        dirs = set()
        for _, _, p in found:
            p.unlink(missing_ok=True)
            dirs.add(p.parent)
        for _, last, journal in self._journals():
            if last > lsn:
                for line in journal.read_text("ascii").splitlines():
                    dirs.add((self.root / line).parent)
        for d in dirs:
            if d.is_dir():
                for entry in os.scandir(d):
                    if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        os.unlink(entry.path)
                if self._durable:
                    sync_path(d)
        for _, _, journal in self._journals():
            journal.unlink()
        for entry in os.scandir(self.root / "_journal"):  # entries a crash left half-written
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                os.unlink(entry.path)
        if self._durable:
            sync_path(self.root / "_journal")
        return sorted(p for _, _, p in found)

    def checkpoint(self, lsn: int) -> int:
        """Forget journal entries of ranges ending at or before ``lsn``; return how many.

        Call after the store's checkpoint at ``lsn`` is durable: those files are final.
        """
        gone = [j for _, last, j in self._journals() if last <= lsn]
        for j in gone:
            j.unlink()
        return len(gone)

    # -- compaction ------------------------------------------------------------------------
    def compact(
        self, day: _dt.date | str, table: str | None = None, *, max_lsn: int | None = None
    ) -> list[Path]:
        """Merge the files of one day into one file per (table, device bucket).

        Parameters
        ----------
        day : date or 'YYYY-MM-DD'
            UTC day to compact; normally a closed one (run daily, see docs). Re-running
            merges late arrivals into the compacted file.
        table : str, optional
            Only this table; default all.
        max_lsn : int, optional
            Only merge files whose range ends at or before it. Pass the last checkpoint
            LSN when a WAL replay may still rewrite later LSNs.

        Returns
        -------
        list of Path
            The merged files written.
        """
        tables = TABLE_NAMES if table is None else (self._check_table(table),)
        name = _parse_day(day)
        out = []
        for t in tables:
            day_dir = self.root / t / f"day={name}"
            if not day_dir.is_dir():
                continue
            for entry in sorted(os.scandir(day_dir), key=lambda e: e.name):
                if entry.is_dir() and _BUCKET_RE.match(entry.name):
                    merged = self._compact_dir(Path(entry.path), t, max_lsn)
                    if merged is not None:
                        out.append(merged)
        return out

    def _compact_dir(self, d: Path, table: str, max_lsn: int | None) -> Path | None:
        names = os.listdir(d)
        visible, hidden = _visible(names)
        self._compact_delete(d, hidden + _stale_temporaries(d, names))
        inputs = [f for f in visible if max_lsn is None or f[1] <= max_lsn]
        if len(inputs) < 2:
            return None
        merged = self._compact_write(d, table, inputs)
        self._compact_delete(d, [n for _, _, n in inputs])
        return merged

    def _compact_write(self, d: Path, table: str, inputs: list[tuple[int, int, str]]) -> Path:
        """Step 1 of compaction: the merged file, durable and visible (inputs now hidden)."""
        first, last = min(f[0] for f in inputs), max(f[1] for f in inputs)
        path = d / f"{_lsn_name(first, last)}.parquet"
        rel = path.relative_to(self.root).as_posix().replace("/", "_")
        # exist_ok: a compaction that crashed before its rename left this entry behind
        self._journal(self.root / "_journal" / f"{_lsn_name(first, last)}.{rel}.txt", [path], True)
        sources = [d / n for _, _, n in inputs]
        try:
            _write_durable(path, lambda tmp: self._merge(sources, tmp, table), self._durable)
            if self._durable:
                sync_path(d)
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"compaction of {d} failed: {exc}") from exc
        return path

    def _merge(self, sources: list[Path], where: Path, table: str) -> None:
        """Write the rows of ``sources`` to ``where`` one device at a time (memory: one
        device's rows of the day, not the bucket's), sorted as :meth:`write` sorts them."""
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        dataset = ds.dataset([str(p) for p in sources], schema=SCHEMAS[table], format="parquet")
        devices = np.unique(dataset.to_table(columns=["device_id"]).column("device_id").to_numpy())
        options, group_rows = _writer_options(table, self.compression_level)
        with pq.ParquetWriter(where, SCHEMAS[table], **options) as writer:
            for dev in devices.tolist():
                rows = dataset.to_table(filter=pc.field("device_id") == pa.scalar(dev, pa.uint64()))
                writer.write_table(self._sorted(rows, table), row_group_size=group_rows)

    def _compact_delete(self, d: Path, names: Iterable[str]) -> None:
        """Step 2 of compaction: delete the (now hidden) inputs."""
        names = list(names)
        for n in names:
            (d / n).unlink(missing_ok=True)
        if names and self._durable:
            sync_path(d)

    # -- reading ---------------------------------------------------------------------------
    @staticmethod
    def _check_table(table: str) -> str:
        if table not in SCHEMAS:
            raise UsageError(f"unknown table {table!r}; tables: {', '.join(TABLE_NAMES)}")
        return table

    @staticmethod
    def _sorted(t: pa.Table, table: str) -> pa.Table:
        """``t`` sorted by the table's keys (stable); no copy if it already is."""
        keys = _SORT_KEYS.get(table, ("ts_us",))
        if t.num_rows < 2:
            return t
        cols = [t.column(k).to_numpy() for k in keys]
        if _lex_sorted(cols):  # the usual case, in O(n) instead of a lexsort
            return t
        order = np.lexsort(cols[::-1])
        if (order[1:] > order[:-1]).all():
            return t
        return t.take(pa.array(order))

    def files(
        self, table: str, device_id: int | Sequence[int] | None, t0_us: int, t1_us: int
    ) -> list[Path]:
        """Visible files of ``table`` that may hold rows of these devices in [t0, t1).

        Only the day directories of the range are opened (for waveforms, from
        ``t0 - MAX_FRAME_US`` on, since a frame may start before the range), and in
        them only the directories of the devices' buckets (every bucket when
        ``device_id`` is None). The files also hold other devices of those buckets:
        :meth:`read` filters by ``device_id``.
        """
        self._check_table(table)
        if not t0_us < t1_us:
            raise UsageError(f"need t0_us < t1_us, got {t0_us}, {t1_us}")
        lookback = MAX_FRAME_US if table == "waveforms" else 0
        # stored rows have device timestamps inside the protocol's range: clamp to it
        first_day = max(t0_us - lookback, TS_MIN_US) // DAY_US
        last_day = (min(t1_us, TS_MAX_US) - 1) // DAY_US
        if last_day - first_day > 62:  # a long range: list the days that exist
            try:
                existing = [e.name for e in os.scandir(self.root / table)]
            except FileNotFoundError:
                existing = []
            lo, hi = f"day={_day_name(first_day)}", f"day={_day_name(last_day)}"
            day_dirs = [self.root / table / n for n in sorted(existing) if lo <= n <= hi]
        else:
            day_dirs = [self.root / table / f"day={_day_name(d)}" for d in range(first_day, last_day + 1)]
        devices = [device_id] if isinstance(device_id, int | np.integer) else device_id
        buckets = None if devices is None else sorted({int(d) % self.buckets for d in devices})
        out = []
        for day_dir in day_dirs:
            if buckets is None:
                if not day_dir.is_dir():
                    continue
                found = sorted(int(m[1]) for e in os.scandir(day_dir) if (m := _BUCKET_RE.match(e.name)))
                bucket_dirs = [day_dir / f"bucket={b}" for b in found]
            else:
                bucket_dirs = [day_dir / f"bucket={b}" for b in buckets]
            for d in bucket_dirs:
                try:
                    names = os.listdir(d)
                except FileNotFoundError:
                    continue
                out.extend(d / n for _, _, n in _visible(names)[0])
        return out

    def read(
        self,
        table: str,
        device_id: int | Sequence[int] | None,
        t0_us: int,
        t1_us: int,
        filter: pc.Expression | None = None,
        columns: Sequence[str] | None = None,
        extra: pa.Table | None = None,
    ) -> pa.Table:
        """Rows of ``table`` with ``t0_us <= ts_us < t1_us`` (waveforms: overlapping it).

        The building block of the typed readers below and of query layers on top:
        ``filter`` is an extra ``pyarrow.compute`` expression, ``columns`` a projection,
        ``extra`` rows in the table's schema that are not in files yet (e.g. the store's
        unflushed data, see :func:`history_table`), filtered the same way.
        Rows are sorted by ``ts_us`` (then stream and seq, or code).
        """
        return self._read(table, device_id, t0_us, t1_us, None, filter, columns, extra)

    def _read(
        self,
        table: str,
        device_id: int | Sequence[int] | None,
        t0_us: int,
        t1_us: int,
        where: dict[str, list[int]] | None,
        filter: pc.Expression | None,
        columns: Sequence[str] | None,
        extra: pa.Table | None,
    ) -> pa.Table:
        """:meth:`read` plus ``where``: column -> allowed values, checked with numpy.

        Each file's row groups are chosen from its footer's statistics
        (:meth:`_Footer.row_groups`), decoded on this thread, and the rows of the device
        and range kept with numpy masks: a contiguous run of rows (the usual case:
        files are sorted by device and time) is a zero-copy slice.
        """
        self._check_table(table)
        schema = SCHEMAS[table]
        device_id = _device_ids(device_id)
        wanted = None
        if columns is not None:
            unknown = set(columns) - set(schema.names)
            if unknown:
                raise UsageError(f"{table} has no column(s) {sorted(unknown)}")
            wanted = list(dict.fromkeys([*columns, *_SORT_KEYS.get(table, ("ts_us",))]))
        # columns to decode: the projection plus what the masks need (all for a filter)
        needed = None
        if wanted is not None and filter is None:
            need = {*wanted, "device_id", "ts_us", *(where or ())}
            if table == "waveforms":
                need.add("end_ts_us")
            needed = [c for c in schema.names if c in need]
        for attempt in range(3):
            files = self.files(table, device_id, t0_us, t1_us)
            try:
                parts = [
                    self._read_file(f, table, device_id, t0_us, t1_us, where, needed)
                    for f in files
                ]
                break
            except FileNotFoundError:
                # a compaction replaced files between listing and reading: list again
                if attempt == 2:
                    raise StorageError(f"reading {table}: files keep vanishing") from None
            except (OSError, pa.ArrowInvalid) as exc:
                raise StorageError(f"reading {table} failed: {exc}") from exc
        read_schema = schema if needed is None else pa.schema([schema.field(c) for c in needed])
        parts = [t for t in parts if t is not None]
        if extra is not None and extra.num_rows:
            rows = _keep(extra, table, device_id, t0_us, t1_us, where)
            if rows is not None:
                parts.append(rows if needed is None else rows.select(needed))
        if not parts:
            t = read_schema.empty_table()
        else:
            parts = [_conform(t, read_schema) for t in parts]
            t = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        if filter is not None:
            t = t.filter(filter)
        if wanted is not None:
            t = t.select(wanted)
        t = self._sorted(t, table)
        return t.select(list(columns)) if columns is not None else t

    def _read_file(
        self,
        path: Path,
        table: str,
        device_id: int | list[int] | None,
        t0_us: int,
        t1_us: int,
        where: dict[str, list[int]] | None,
        columns: list[str] | None,
    ) -> pa.Table | None:
        """The rows of one file that match (None if none): pruned, decoded, masked."""
        import pyarrow.parquet as pq

        footer = self._footer(str(path))
        groups = footer.row_groups(table, device_id, t0_us, t1_us)
        if not groups:
            return None
        # decoded on this thread (a query decodes a few row groups; the pools' wake-ups
        # cost more than they give on a loaded machine), column chunks read as the
        # decode reaches them (pre-buffering measured the same CPU, and an early stop
        # then skips the rest)
        pf = pq.ParquetFile(str(path), metadata=footer.metadata, pre_buffer=False)
        if footer.sorted and isinstance(device_id, int):
            # rows are sorted by (device_id, ts_us): stop at the first batch past the range
            batches = []
            size = _BATCH_ROWS.get(table, _BATCH_ROWS_OTHER)
            for batch in pf.iter_batches(size, groups, columns, use_threads=False):
                if batch.num_rows == 0:
                    continue
                dev = batch.column("device_id")[0].as_py()
                ts = batch.column("ts_us")[0].as_py()
                if dev > device_id or (dev == device_id and ts >= t1_us):
                    break
                batches.append(batch)
            if not batches:
                return None
            t = pa.Table.from_batches(batches)
        else:
            t = pf.read_row_groups(groups, columns, use_threads=False)
        return _keep(t, table, device_id, t0_us, t1_us, where)

    def _footer(self, path: str) -> _Footer:
        """The parsed footer of ``path``, from the LRU cache while the file is unchanged.

        Raises FileNotFoundError when the file was listed, then compacted away.
        """
        import pyarrow.parquet as pq

        if not self.footer_cache_bytes:
            return _Footer(pq.read_metadata(path))
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._footers_lock:
            hit = self._footers.get(path)
            if hit is not None and hit[0] == key:
                self._footers.move_to_end(path)
                self.footer_stats["hits"] += 1
                return hit[1]
        footer = _Footer(pq.read_metadata(path))  # outside the lock
        with self._footers_lock:
            stats = self.footer_stats
            stats["misses"] += 1
            old = self._footers.pop(path, None)
            if old is not None:
                stats["bytes"] -= old[2]
            if footer.size <= self.footer_cache_bytes:
                self._footers[path] = (key, footer, footer.size)
                stats["bytes"] += footer.size
            while stats["bytes"] > self.footer_cache_bytes:
                stats["bytes"] -= self._footers.popitem(last=False)[1][2]
            stats["files"] = len(self._footers)
        return footer

    def read_waveforms(
        self,
        device_id: int,
        t0_us: int,
        t1_us: int,
        frame_type: int | None = None,
        channel: int | None = None,
        extra: pa.Table | None = None,
    ) -> pa.Table:
        """Waveform frames of a device overlapping [t0_us, t1_us), sorted by ts_us.

        ``samples`` holds raw int16; physical value = ``sample * gain + offset``.
        """
        where = {}
        if frame_type is not None:
            if frame_type not in WAVEFORM_TYPES:
                raise UsageError(f"frame_type {frame_type} is not a waveform type")
            where["frame_type"] = [int(frame_type)]
        if channel is not None:
            where["channel"] = [_small_int(channel, "channel")]
        return self._read("waveforms", device_id, t0_us, t1_us, where, None, None, extra)

    def read_samples(
        self, device_id: int, frame_type: int, channel: int, t0_us: int, t1_us: int,
        extra: pa.Table | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One stream's samples in [t0_us, t1_us) as flat arrays (see :func:`samples_of`)."""
        t = self.read_waveforms(device_id, t0_us, t1_us, frame_type, channel, extra=extra)
        return samples_of(t, t0_us, t1_us)

    def read_numerics(
        self, device_id: int, t0_us: int, t1_us: int, codes: Iterable[int] | None = None,
        extra: pa.Table | None = None,
    ) -> pa.Table:
        """Numeric rows of a device in [t0_us, t1_us), optionally only some codes."""
        where = None
        if codes is not None:
            where = {"code": sorted({_small_int(c, "code") for c in codes})}
        return self._read("numerics", device_id, t0_us, t1_us, where, None, None, extra)

    def read_status(
        self, device_id: int, t0_us: int, t1_us: int, extra: pa.Table | None = None
    ) -> pa.Table:
        """Status rows of a device in [t0_us, t1_us)."""
        return self.read("status", device_id, t0_us, t1_us, extra=extra)

    def read_accessories(
        self, device_id: int, t0_us: int, t1_us: int, extra: pa.Table | None = None
    ) -> pa.Table:
        """Accessory rows (from status frames) of a device in [t0_us, t1_us)."""
        return self.read("accessories", device_id, t0_us, t1_us, extra=extra)

    def read_acks(
        self, device_id: int, t0_us: int, t1_us: int, extra: pa.Table | None = None
    ) -> pa.Table:
        """Command acknowledgements of a device in [t0_us, t1_us)."""
        return self.read("acks", device_id, t0_us, t1_us, extra=extra)
