"""Columnar result of decoding: :class:`DecodedBatch`.

A decoder turns a byte buffer holding many frames into one batch of numpy columns,
one table per kind of content, without a Python object per frame or per sample.
Every table row carries ``frame``, the index of its frame in the ``frames`` table,
so a batch can be filtered frame-wise (:meth:`DecodedBatch.select`).

Tables and columns (dtype):

``frames`` (one row per accepted frame)
    device_id u8, frame_type u1, channel u1, seq u4, ts_us i8 (µs since the Unix epoch),
    raw_offset i8, raw_length u4 (the frame's bytes in :attr:`DecodedBatch.raw`).
``waveforms`` (one row per waveform frame)
    frame u4, device_id u8, frame_type u1, channel u1, seq u4, ts_us i8, fs_hz u2,
    gain f4, offset f4, sample_start i8, n_samples u4. Physical value of raw sample
    ``s`` is ``s * gain + offset`` in µV (ECG), mmHg (cuff) or arbitrary units (pleth).
``numerics`` (one row per numeric entry)
    frame u4, device_id u8, seq u4, ts_us i8, code u1, status u1, value f4 (unit of the
    code, NaN when status is UNAVAILABLE).
``status`` (one row per status frame)
    frame u4, device_id u8, seq u4, ts_us i8, battery u1 (%; 255 unknown), flags u1,
    carrier u1, rssi i1 (dBm; -128 unknown), leads_off u2, fault u2, powered_s u4
    (cumulative powered-on seconds of the terminal), n_accessories u1.
``accessories`` (one row per accessory in a status frame)
    frame u4, device_id u8, ts_us i8, kind u1, serial S16 (ASCII, NUL-padded),
    powered_s u4.
``acks`` (command acknowledgements)
    frame u4, device_id u8, seq u4, ts_us i8, command_id u4, kind u1, status u1, detail u2.
``commands`` (server-to-device commands)
    frame u4, device_id u8, seq u4, ts_us i8, command_id u4, kind u1, arg u4.

``samples`` is the int16 array all waveform rows point into; ``raw`` holds the
accepted frames' bytes back to back (what the write-ahead log stores);
``rejects`` counts rejected frames per :class:`~vitalcore.protocol.RejectReason`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numba as nb
import numpy as np

from .errors import UsageError
from .protocol import REJECT_REASONS

__all__ = ["TABLES", "DecodedBatch"]

_U8, _U4, _U2, _U1 = np.dtype("<u8"), np.dtype("<u4"), np.dtype("<u2"), np.dtype("u1")
_I8, _I1, _F4 = np.dtype("<i8"), np.dtype("i1"), np.dtype("<f4")

#: Column names and dtypes of every table, in order.
TABLES: dict[str, tuple[tuple[str, np.dtype], ...]] = {
    "frames": (
        ("device_id", _U8),
        ("frame_type", _U1),
        ("channel", _U1),
        ("seq", _U4),
        ("ts_us", _I8),
        ("raw_offset", _I8),
        ("raw_length", _U4),
    ),
    "waveforms": (
        ("frame", _U4),
        ("device_id", _U8),
        ("frame_type", _U1),
        ("channel", _U1),
        ("seq", _U4),
        ("ts_us", _I8),
        ("fs_hz", _U2),
        ("gain", _F4),
        ("offset", _F4),
        ("sample_start", _I8),
        ("n_samples", _U4),
    ),
    "numerics": (
        ("frame", _U4),
        ("device_id", _U8),
        ("seq", _U4),
        ("ts_us", _I8),
        ("code", _U1),
        ("status", _U1),
        ("value", _F4),
    ),
    "status": (
        ("frame", _U4),
        ("device_id", _U8),
        ("seq", _U4),
        ("ts_us", _I8),
        ("battery", _U1),
        ("flags", _U1),
        ("carrier", _U1),
        ("rssi", _I1),
        ("leads_off", _U2),
        ("fault", _U2),
        ("powered_s", _U4),
        ("n_accessories", _U1),
    ),
    "accessories": (
        ("frame", _U4),
        ("device_id", _U8),
        ("ts_us", _I8),
        ("kind", _U1),
        ("serial", np.dtype("S16")),
        ("powered_s", _U4),
    ),
    "acks": (
        ("frame", _U4),
        ("device_id", _U8),
        ("seq", _U4),
        ("ts_us", _I8),
        ("command_id", _U4),
        ("kind", _U1),
        ("status", _U1),
        ("detail", _U2),
    ),
    "commands": (
        ("frame", _U4),
        ("device_id", _U8),
        ("seq", _U4),
        ("ts_us", _I8),
        ("command_id", _U4),
        ("kind", _U1),
        ("arg", _U4),
    ),
}


class DecodedBatch:
    """Columnar frames decoded from one or more buffers.

    Parameters
    ----------
    tables : mapping of table name to mapping of column name to 1-D array
        Every table of :data:`TABLES` with exactly its columns and dtypes.
    samples : numpy.ndarray of int16
        Raw waveform samples; waveform rows index into it.
    raw : numpy.ndarray of uint8
        Accepted frames' bytes, back to back.
    rejects : numpy.ndarray of int64
        Rejected-frame counts per reason (length ``len(REJECT_REASONS)``).
    """

    __slots__ = ("tables", "samples", "raw", "rejects")

    def __init__(
        self,
        tables: Mapping[str, Mapping[str, np.ndarray]],
        samples: np.ndarray,
        raw: np.ndarray,
        rejects: np.ndarray,
    ) -> None:
        self.tables = {name: dict(tables[name]) for name in TABLES}
        self.samples = samples
        self.raw = raw
        self.rejects = rejects

    # -- construction -------------------------------------------------------------
    @classmethod
    def empty(cls) -> DecodedBatch:
        tables = {
            name: {col: np.empty(0, dtype) for col, dtype in cols} for name, cols in TABLES.items()
        }
        return cls(
            tables,
            np.empty(0, np.int16),
            np.empty(0, np.uint8),
            np.zeros(len(REJECT_REASONS), np.int64),
        )

    @classmethod
    def concat(cls, batches: Iterable[DecodedBatch], *, raw: bool = True) -> DecodedBatch:
        """Concatenate batches in order, fixing up frame, sample and byte offsets.

        ``raw=False``: the frames' bytes are not needed, and not copied (``raw`` is then
        empty and :meth:`frame_bytes` unavailable, unless a single batch is returned as
        it is): for a writer of the decoded columns and samples only, such as the
        store's Parquet flush, which then copies ~128 MB less per flush. Samples and bytes are copied one batch at a time so the
        GIL is free between batches (a single ``np.concatenate`` of a flush's samples held
        it 30-120 ms and stalled the event loop).
        """
        batches = list(batches)
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        frame_base = np.cumsum([0] + [b.n_frames for b in batches[:-1]])
        sample_base = np.cumsum([0] + [len(b.samples) for b in batches[:-1]])
        raw_base = np.cumsum([0] + [len(b.raw) for b in batches[:-1]])
        tables: dict[str, dict[str, np.ndarray]] = {}
        for name, cols in TABLES.items():
            out: dict[str, np.ndarray] = {}
            for col, dtype in cols:
                parts = []
                for i, b in enumerate(batches):
                    a = b.tables[name][col]
                    if col == "frame":
                        a = a + np.asarray(frame_base[i], dtype)
                    elif col == "sample_start":
                        a = a + sample_base[i]
                    elif col == "raw_offset":
                        a = a + raw_base[i]
                    parts.append(a)
                out[col] = np.concatenate(parts).astype(dtype, copy=False)
            tables[name] = out
        return cls(
            tables,
            _join([b.samples for b in batches], np.dtype(np.int16)),
            _join([b.raw for b in batches] if raw else [], np.dtype(np.uint8)),
            np.sum([b.rejects for b in batches], axis=0),
        )

    # -- access -------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return len(self.tables["frames"]["device_id"])

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, table: str) -> dict[str, np.ndarray]:
        return self.tables[table]

    def rejected(self) -> dict[str, int]:
        """Rejected-frame counts by reason name (only reasons that occurred)."""
        return {REJECT_REASONS[i]: int(n) for i, n in enumerate(self.rejects) if n}

    def waveform_samples(self, row: int) -> np.ndarray:
        """Raw int16 samples of waveform ``row`` (a view, no copy)."""
        w = self.tables["waveforms"]
        start = int(w["sample_start"][row])
        return self.samples[start : start + int(w["n_samples"][row])]

    def waveform_values(self, row: int) -> np.ndarray:
        """Physical float32 values of waveform ``row`` (µV, mmHg or arbitrary units)."""
        w = self.tables["waveforms"]
        return self.waveform_samples(row) * w["gain"][row] + w["offset"][row]

    def frame_bytes(self, i: int) -> bytes:
        """The bytes of accepted frame ``i`` as received."""
        f = self.tables["frames"]
        start = int(f["raw_offset"][i])
        return self.raw[start : start + int(f["raw_length"][i])].tobytes()

    # -- filtering ----------------------------------------------------------------
    def select(self, keep: np.ndarray) -> DecodedBatch:
        """Keep only the frames where the boolean mask ``keep`` (length n_frames) is true.

        Rows of every table follow their frame; frame indices, sample starts and raw
        offsets are renumbered. Reject counts are carried over unchanged.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.n_frames,):
            raise ValueError("keep must be a boolean mask with one entry per frame")
        if keep.all():
            return self
        new_index = np.cumsum(keep, dtype=np.int64) - 1
        tables: dict[str, dict[str, np.ndarray]] = {}
        for name, cols in self.tables.items():
            if name == "frames":
                rows = keep
            else:
                rows = keep[cols["frame"].astype(np.intp)]
            out = {col: a[rows] for col, a in cols.items()}
            if "frame" in out:
                out["frame"] = new_index[out["frame"].astype(np.intp)].astype(_U4)
            tables[name] = out
        w = tables["waveforms"]
        samples, w["sample_start"] = _gather(self.samples, w["sample_start"], w["n_samples"])
        f = tables["frames"]
        raw, f["raw_offset"] = _gather(self.raw, f["raw_offset"], f["raw_length"])
        return DecodedBatch(tables, samples, raw, self.rejects.copy())

    # -- Arrow ----------------------------------------------------------------------
    def to_arrow(self, table: str):
        """Table ``table`` as a ``pyarrow.Table``.

        For ``waveforms`` the samples become a ``samples`` column of type
        ``list<int16>`` built over the sample array without copying it; ``serial``
        columns become strings.
        """
        import pyarrow as pa

        cols = self.tables[table]
        arrays: dict[str, pa.Array] = {}
        for col, a in cols.items():
            if a.dtype.kind == "S":
                arrays[col] = pa.array(np.char.decode(np.char.rstrip(a, b"\0"), "ascii"))
            elif col in ("sample_start", "raw_offset", "raw_length"):
                continue
            else:
                arrays[col] = pa.array(a)
        if table == "waveforms":
            offsets = np.empty(len(a := cols["n_samples"]) + 1, np.int64)
            offsets[0] = 0
            np.cumsum(a, out=offsets[1:])
            starts = cols["sample_start"]
            if len(starts) and not np.array_equal(starts, offsets[:-1]):
                samples, _ = _gather(self.samples, starts, a)
            else:
                samples = self.samples[: offsets[-1]]
            arrays["samples"] = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(samples))
        return pa.table(arrays)


def _join(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """``np.concatenate(parts)`` as one copy per part, letting other threads take the GIL
    between parts (each part is one commit's worth: ~100-200 KB)."""
    out = np.empty(sum(len(p) for p in parts), dtype)
    pos = 0
    for p in parts:
        out[pos:pos + len(p)] = p
        pos += len(p)
    return out


def _gather(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``data[s:s+n]`` for each (s, n); return it and the new starts.

    One copy per run in a numba kernel that releases the GIL. (A numpy fancy index
    built three int64 arrays of the output's length: a 60 s Parquet flush of 1,500
    devices grew the server's RSS by 1.7 GB and held the GIL ~1 s, stalling the event
    loop.) Raises UsageError if a run lies outside ``data``.
    """
    lengths = lengths.astype(np.int64)
    starts = starts.astype(np.int64)
    new_starts = np.zeros(len(lengths), np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=new_starts[1:])
    if len(lengths) and ((lengths < 0).any() or (starts < 0).any()
                         or (starts + lengths > len(data)).any()):
        raise UsageError("a run to gather lies outside its buffer")
    out = np.empty(int(lengths.sum()), data.dtype)
    if len(out):
        _copy_runs(data, starts, lengths, new_starts, out)
    return out, new_starts


@nb.njit(cache=True, nogil=True)
def _copy_runs(data, starts, lengths, new_starts, out):  # pragma: no cover - numba
    for i in range(starts.shape[0]):
        n = lengths[i]
        if n > 0:
            out[new_starts[i] : new_starts[i] + n] = data[starts[i] : starts[i] + n]
