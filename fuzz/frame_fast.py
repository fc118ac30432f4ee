"""Fast invariants of the Cython frame decoder alone, for 10-million-execution campaigns.

:func:`check` is the fuzz target of ``fuzz_frames.py --fast`` (``VC_FUZZ_FAST=1``).
Unlike :mod:`frame_invariants` it does **not** run the pure-Python reference twin (the
differential oracle, which limits that mode to hundreds of executions per second); it
runs only ``vitalcore._ext.framecodec`` and checks what the decoder's own output must
satisfy, mostly with numpy over whole columns. It raises ``AssertionError`` if:

1. ``feed``, ``take`` or ``stats`` raise anything on any bytes (the decoder documents
   no error for peer data: every malformed frame is a counted reject);
2. counters disagree: ``feed``'s return value with ``accepted_frames``, the growth of
   ``reject_counts`` with the batch's ``rejects`` and with the kept rejects, per reason;
   ``stats()`` with the counters; ``bad_json`` (JSON decoder only) is ever counted; the
   ring of kept rejects does not hold exactly ``min(keep_rejects, rejects so far)``;
3. byte accounting: the accepted frames' bytes (``raw``) plus the kept rejects' bytes of
   a feed are not exactly the fed bytes, tiled in order (accepted + rejected == fed;
   the decoder buffers nothing between feeds, docs/protocol.md §9);
4. a reject breaks §9: a reason outside ``RejectReason``; an empty reject; a
   resynchronising reject (bad_magic, truncated, bad_version, checksum, length before
   the CRC) with a device id or holding a magic after its first byte (tails of fewer
   than a header aside); a reject after the CRC (unknown_type, value_range,
   device_mismatch, payload length) that is not one CRC-valid frame of its device id;
   a device_mismatch without a bound device or of the bound device;
5. a batch is not internally consistent: dtypes and lengths of the columns of each
   table; one ``frames`` row per accepted frame; ``raw_offset``/``raw_length`` tile
   ``raw``; each raw frame's header bytes (magic, version 1, type, length, device id,
   seq, timestamp) equal its columns; one waveforms/status/acks/commands row per frame
   of that type, numerics and accessories rows only on frames of their type, in frame
   order, with the frame's device id, seq and timestamp; ``sample_start``/``n_samples``
   tile ``samples``; accessories per status frame equal ``n_accessories``; timestamps
   in [TS_MIN_US, TS_MAX_US]; numeric codes known, status 0-2, NaN exactly when
   unavailable, other values finite and within the code's range; a bound decoder
   accepted only its device;
6. decoding the batch's ``raw`` bytes again in one feed (a fresh decoder, same device
   binding) rejects anything or gives a different batch (every column, bit for bit).

What it cannot see (the twin mode does): a decoded value that is wrong but plausible
(a gain read from the wrong offset, a DELTA8 sample off by one), a frame rejected for
a reason that is wrong but allowed, an encoder bug.

Flags (control byte 0), as in :mod:`frame_invariants`: bit 0 repairs CRCs (with the
C ``crc32c``), bit 1 binds the decoder to the first frame's device id, bit 2 takes a
batch after every chunk if bit 5 is set too, bits 3-4 pick ``keep_rejects``
(:data:`KEEP_CHOICES`).
"""

from __future__ import annotations

import struct
from operator import attrgetter

import numpy as np
from frame_invariants import repair_crcs
from fuzzlib import chunks, control

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.batch import TABLES, DecodedBatch

R = P.RejectReason
# plain ints: IntEnum attribute look-ups cost microseconds on every input
BAD_MAGIC, TRUNCATED, BAD_VERSION, LENGTH, CHECKSUM, UNKNOWN_TYPE, VALUE_RANGE = range(7)
DEVICE_MISMATCH, BAD_JSON = 7, 8
assert [BAD_MAGIC, TRUNCATED, BAD_VERSION, LENGTH, CHECKSUM, UNKNOWN_TYPE, VALUE_RANGE,
        DEVICE_MISMATCH, BAD_JSON] == [int(r) for r in R]
N_REASONS = len(P.REJECT_REASONS)
KEEP_CHOICES = (100_000, 100_000, 0, 3)  # half the inputs keep every reject: full tiling
RESYNC = frozenset({BAD_MAGIC, TRUNCATED, BAD_VERSION, CHECKSUM})
AFTER_CRC = frozenset({UNKNOWN_TYPE, VALUE_RANGE, DEVICE_MISMATCH})
LO = np.full(256, np.nan, np.float64)
HI = np.full(256, np.nan, np.float64)
for _code, (_lo, _hi) in P.NUMERIC_RANGES.items():
    LO[_code], HI[_code] = _lo, _hi


def decode_plan(data: bytes) -> tuple[bytes, int, int, int, bool]:
    """What the control prefix asks for: ``(payload, chunk seed, bound device or 0,
    keep_rejects, take after every chunk)`` (the flags are in the module docstring)."""
    flags, seed, payload = control(data)
    if flags & 1:
        payload = repair_crcs(payload, codec.crc32c)
    device = 0
    if flags & 2:
        device = struct.unpack_from("<Q", payload, 8)[0] if len(payload) >= 16 else 0x1234
    # a quarter of the inputs take after every chunk: take() costs ~30 µs
    return payload, seed, device, KEEP_CHOICES[(flags >> 3) & 3], flags & 0x24 == 0x24


def check(data: bytes) -> None:
    payload, seed, device, keep, take_each = decode_plan(data)
    dec = codec.FrameDecoder(keep_rejects=keep)
    counts = [0] * N_REASONS  # small arrays as lists: a numpy call costs microseconds
    seen = 0  # rejects counted so far
    pending: list[bytes] = []  # fed since the last take()
    pending_rejects: list[tuple[int, int, bytes]] = []
    complete = True  # every reject of the pending feeds is in pending_rejects
    accepted_pending = 0
    for chunk in chunks(payload, seed):
        before = dec.accepted_frames
        n = dec.feed(chunk, device)
        assert type(n) is int and n >= 0 and dec.accepted_frames == before + n, ("accepted", n)
        now = dec.reject_counts.tolist()
        delta = [a - b for a, b in zip(now, counts, strict=True)]
        assert min(delta) >= 0 and delta[BAD_JSON] == 0, ("reject counts", delta)
        new = sum(delta)
        seen += new
        ring = dec.rejected_frames
        assert len(ring) == (seen if keep == 100_000 else min(keep, seen)), ("ring", len(ring))
        if keep == 100_000:
            mine = [ring[k] for k in range(len(ring) - new, len(ring))]
            per = [0] * N_REASONS
            for r, _, _ in mine:
                per[r] += 1
            assert per == delta, ("kept rejects vs counts", per, delta)
            _check_rejects(mine, device)
            pending_rejects += mine
        else:
            complete = False
        counts = now
        accepted_pending += n
        pending.append(chunk)
        if take_each:
            _check_take(dec, accepted_pending, delta, chunk, pending_rejects, complete, device)
            pending, pending_rejects, complete, accepted_pending = [], [], keep == 100_000, 0
    if not take_each:  # one batch for all the feeds: each feed is tiled, so their sequence is
        _check_take(dec, accepted_pending, counts, b"".join(pending), pending_rejects, complete,
                    device)
    stats = dec.stats()
    assert stats["accepted_frames"] == dec.accepted_frames
    assert list(stats["rejected"].values()) == counts
    assert tuple(stats["rejected"]) == P.REJECT_REASONS


def _check_take(dec, n_frames: int, delta: list[int], fed: bytes, rejects: list,
                complete: bool, device: int) -> None:
    batch = dec.take()
    assert isinstance(batch, DecodedBatch)
    assert batch.rejects.dtype == np.int64 and batch.rejects.tolist() == delta, (
        "batch rejects", batch.rejects, delta)
    check_batch(batch, n_frames, device)
    if complete:
        assert len(batch.raw) + sum(len(x) for _, _, x in rejects) == len(fed), "bytes accounted"
        _check_tiling(batch, fed, rejects)
    if n_frames:
        again = codec.FrameDecoder(keep_rejects=0).decode(batch.raw, device)
        assert not any(again.rejects.tolist()), ("raw bytes re-decode with rejects", again.rejects)
        for name in TABLES:
            x, y = again.tables[name], batch.tables[name]
            if len(y["frame" if name != "frames" else "device_id"]) or len(
                    x["frame" if name != "frames" else "device_id"]):
                assert [a.tobytes() for a in x.values()] == [a.tobytes() for a in y.values()], (
                    "re-decoded batch differs", name)
        assert again.samples.tobytes() == batch.samples.tobytes(), "re-decoded samples differ"
        assert again.raw.tobytes() == batch.raw.tobytes()


def _check_rejects(rejects: list, device: int) -> None:
    for reason, dev, piece in rejects:
        assert 0 <= reason < N_REASONS and reason != BAD_JSON, ("reason", reason)
        assert type(piece) is bytes and piece, ("empty reject", reason)
        assert len(piece) <= P.MAX_FRAME_SIZE
        if reason in RESYNC or (reason == LENGTH and not _crc_ok(piece)):
            assert dev == 0, ("resync reject with a device id", reason, dev)
            if not (reason == TRUNCATED and len(piece) < P.HEADER_SIZE):
                assert piece.find(P.MAGIC, 1) == -1, ("resync reject hides a magic", reason)
            assert (reason == BAD_MAGIC) == (piece[:2] != P.MAGIC) or piece == b"V", reason
        else:
            assert reason in AFTER_CRC or reason == LENGTH, reason
            assert _crc_ok(piece), ("reject after the CRC is not a CRC-valid frame", reason)
            assert dev == struct.unpack_from("<Q", piece, 8)[0], ("reject device id", reason)
            if reason == DEVICE_MISMATCH:
                assert device != 0 and dev != device, ("device_mismatch", device, dev)


def _crc_ok(piece: bytes) -> bool:
    if len(piece) < P.MIN_FRAME_SIZE or piece[:2] != P.MAGIC:
        return False
    (plen,) = struct.unpack_from("<H", piece, 6)
    return (len(piece) == P.MIN_FRAME_SIZE + plen and
            codec.crc32c(memoryview(piece)[:-4]) == struct.unpack_from("<I", piece, len(piece) - 4)[0])


def _check_tiling(batch: DecodedBatch, fed: bytes, rejects: list) -> None:
    """Accepted frames and rejects cover ``fed`` exactly, in order.

    Greedy first (a frame where a frame fits, else a reject); only if that gets stuck, a
    frontier search (a reject's bytes may also fit where the next frame does).
    """
    f = batch.tables["frames"]
    raw = batch.raw.tobytes()
    frames = [raw[o : o + n] for o, n in zip(f["raw_offset"].tolist(),
                                             f["raw_length"].tolist(), strict=True)]
    pieces = [x for _, _, x in rejects]
    i = j = p = 0
    nf, nr, size = len(frames), len(pieces), len(fed)
    while True:
        if i < nf and fed.startswith(frames[i], p):
            p += len(frames[i])
            i += 1
        elif j < nr and fed.startswith(pieces[j], p):
            p += len(pieces[j])
            j += 1
        else:
            break
    if p == size and i == nf and j == nr:
        return
    frontier = {(0, 0, 0)}  # (frames used, rejects used, position)
    while frontier:
        nxt = set()
        for i, j, p in frontier:
            if p == size and i == nf and j == nr:
                return
            if i < nf and fed.startswith(frames[i], p):
                nxt.add((i + 1, j, p + len(frames[i])))
            if j < nr and fed.startswith(pieces[j], p):
                nxt.add((i, j + 1, p + len(pieces[j])))
        frontier = nxt
    raise AssertionError("accepted frames and rejects do not tile the fed bytes in order")


def check_batch(batch: DecodedBatch, n_frames: int, device: int = 0) -> None:
    """Internal consistency of one batch of ``n_frames`` frames (module docstring, 5).

    Written for speed (it runs on every fuzz input): whole-column numpy operations and
    byte comparisons, nothing per row in Python.
    """
    t = batch.tables
    n_rows = {}
    for name, dtypes in _DTYPES:
        cols = t[name].values()
        shapes = set(map(_SHAPE, cols))
        assert tuple(map(_DTYPE, cols)) == dtypes and len(shapes) == 1, (name, "columns")
        (shape,) = shapes
        assert len(shape) == 1, (name, shape)
        n_rows[name] = shape[0]
    assert batch.samples.dtype == np.int16 and batch.raw.dtype == np.uint8
    assert batch.rejects.shape == (N_REASONS,) and min(batch.rejects.tolist()) >= 0
    fr = t["frames"]
    assert len(fr["device_id"]) == n_frames, ("frames rows", len(fr["device_id"]), n_frames)
    if not n_frames:
        assert not len(batch.raw) and not len(batch.samples), "bytes without frames"
        assert not any(n_rows.values()), ("rows without frames", n_rows)
        return
    raw = batch.raw
    length = fr["raw_length"].astype(np.int64)
    off = fr["raw_offset"]
    ends = np.cumsum(length)
    assert off[0] == 0 and _eq(off[1:], ends[:-1]), "raw_offset does not tile raw"
    assert ends[-1] == len(raw), ("raw length", ends[-1], len(raw))
    ftype = fr["frame_type"]
    assert KNOWN_TYPE[ftype].all(), ("frame type", ftype)
    ts = fr["ts_us"]
    assert ts.min() >= P.TS_MIN_US and ts.max() <= P.TS_MAX_US, "timestamp"
    if device:
        assert (fr["device_id"] == device).all(), "a bound decoder accepted another device"
    assert length.min() >= P.MIN_FRAME_SIZE and length.max() <= P.MAX_FRAME_SIZE
    head = raw[off[:, None] + _HEAD]  # the first 28 bytes of every frame, one row each
    assert (head[:, :3] == _MAGIC_V1).all(), "magic or version byte"
    assert _eq(head[:, 4], ftype), "type byte"
    assert _eq(head[:, 6:8].copy().view("<u2")[:, 0], length - P.MIN_FRAME_SIZE), "length"
    assert _eq(head[:, 8:16].copy().view("<u8")[:, 0], fr["device_id"]), "device id bytes"
    assert _eq(head[:, 16:20].copy().view("<u4")[:, 0], fr["seq"]), "seq bytes"
    assert _eq(head[:, 20:28].copy().view("<i8")[:, 0], ts), "timestamp bytes"
    kind = KIND[ftype]
    per_kind = np.bincount(kind, minlength=6).tolist()
    for name, k, exact in _ROWS:
        rows = t[name]
        idx = rows["frame"]
        if not len(idx):
            assert not (exact and per_kind[k]), (name, "frames without their row")
            continue
        if exact:
            assert _eq(idx, np.flatnonzero(kind == k)), (name, "one row per frame")
        else:
            assert (kind[idx] == k).all() and (idx[1:] >= idx[:-1]).all(), (name, "rows")
        for col in _SHARED[name]:
            assert _eq(rows[col], fr[col][idx]), (name, col)
    w = t["waveforms"]
    ns = w["n_samples"].astype(np.int64)
    if len(ns):
        ends = np.cumsum(ns)
        assert w["sample_start"][0] == 0 and _eq(w["sample_start"][1:], ends[:-1]), "samples"
        assert ends[-1] == len(batch.samples), "samples not tiled by waveform rows"
        assert _eq(w["frame_type"], ftype[w["frame"]]), "waveform type"
        assert _eq(w["channel"], fr["channel"][w["frame"]]), "waveform channel"
    else:
        assert not len(batch.samples), "samples without waveform rows"
    st = t["status"]
    if len(st["frame"]):
        acc = np.bincount(t["accessories"]["frame"], minlength=n_frames)[st["frame"]]
        assert _eq(acc.astype(np.uint8), st["n_accessories"]), "n_accessories"
    nu = t["numerics"]
    if len(nu["code"]):
        code, status = nu["code"], nu["status"]
        assert KNOWN_CODE[code].all(), "unknown numeric code kept"
        assert status.max() <= 2, "numeric status"
        v = nu["value"].astype(np.float64)
        nan = np.isnan(v)
        assert _eq(nan, status == 2), "NaN exactly when unavailable"
        ok = nan | ((v >= LO[code]) & (v <= HI[code]))
        assert ok.all(), "numeric value out of its range"


def _eq(a: np.ndarray, b: np.ndarray) -> bool:
    """Same length and values (``b`` cast to ``a``'s dtype, which holds every value)."""
    return a.shape == b.shape and a.tobytes() == b.astype(a.dtype, copy=False).tobytes()


_DTYPES = tuple((name, tuple(d for _, d in cols)) for name, cols in TABLES.items())
_DTYPE, _SHAPE = attrgetter("dtype"), attrgetter("shape")
_HEAD = np.arange(P.HEADER_SIZE)
_MAGIC_V1 = np.array([0x56, 0x43, 1], np.uint8)
KNOWN_TYPE = np.zeros(256, bool)
KNOWN_TYPE[[int(x) for x in P.FrameType]] = True
KNOWN_CODE = np.zeros(256, bool)
KNOWN_CODE[list(P.NUMERIC_RANGES)] = True
#: Frame types in groups (waveform = 1, then one per table of its own) for the row checks.
KIND = np.zeros(256, np.uint8)
KIND[[int(x) for x in P.WAVEFORM_TYPES]] = 1
KIND[int(P.FrameType.NUMERICS)], KIND[int(P.FrameType.STATUS)] = 2, 3
KIND[int(P.FrameType.ACK)], KIND[int(P.FrameType.COMMAND)] = 4, 5
#: (table, frame kind of its rows, exactly one row per frame of that kind)
_SHARED = {name: [c for c in ("device_id", "seq", "ts_us") if c in dict(cols)]
           for name, cols in TABLES.items()}
_ROWS = (("waveforms", 1, True), ("numerics", 2, False), ("status", 3, True),
         ("accessories", 3, False), ("acks", 4, True), ("commands", 5, True))
