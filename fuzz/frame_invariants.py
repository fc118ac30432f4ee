"""Invariants of the wire-format v1 frame decoder, checked on arbitrary bytes.

:func:`check` is the fuzz target of ``fuzz_frames.py`` and the oracle of the
regression and property tests in ``tests/fuzz``. It feeds the input in fragments to
the Cython decoder and to its pure-Python twin and raises ``AssertionError`` if:

1. either decoder raises anything on any bytes (``feed`` never raises on peer data);
2. they differ in accepted counts, batches (every column, samples, raw bytes, reject
   counts per reason), kept rejects, cumulative counters or ``stats()``;
3. the bytes of one ``feed`` are not tiled exactly, in order, by the accepted frames and
   the kept rejects (nothing lost, nothing counted twice; docs/protocol.md §9);
4. a reject breaks the rules of §9: a resynchronising reject (bad_magic, truncated,
   bad_version, length before the CRC, checksum) contains no magic after its first
   byte; a reject after a good CRC is one whole CRC-valid frame;
5. an accepted frame, re-encoded from its decoded columns by the Cython encoders and
   by the reference encoders, gives different bytes in the two, does not decode to the
   same columns, or -- for a frame in canonical form (minor 0, reserved bytes 0,
   canonical DELTA8, no unknown numeric codes) -- differs from the original bytes.

Flags (control byte 0): bit 0 repairs the CRC of every complete frame found in the
input before decoding (otherwise the fuzzer almost never gets past the CRC check and
never reaches the payload rules); bit 1 binds the decoders to a device id (the first
frame's, so DEVICE_MISMATCH is reachable both ways); bit 2 calls ``take()`` after every
chunk instead of once at the end; bits 3-4 pick ``keep_rejects``.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from fuzzlib import chunks, control

from vitalcore import _refcodec as ref
from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.batch import TABLES, DecodedBatch

R = P.RejectReason
KEEP_CHOICES = (100_000, 0, 1, 5)
#: Reasons decided before the CRC is checked, or by the CRC: the reader resynchronises.
RESYNC = frozenset({R.BAD_MAGIC, R.TRUNCATED, R.BAD_VERSION, R.CHECKSUM})
#: Reasons decided on a frame whose CRC matched: the reject is that whole frame.
AFTER_CRC = frozenset({R.UNKNOWN_TYPE, R.VALUE_RANGE, R.DEVICE_MISMATCH})
WAVES = frozenset(int(t) for t in P.WAVEFORM_TYPES)


def repair_crcs(data: bytes, crc32c=ref.crc32c) -> bytes:
    """Rewrite the CRC of every complete, length-plausible frame, walking like a reader.

    ``crc32c`` is the reference CRC by default; the fast mode passes the C one.
    """
    buf = bytearray(data)
    i = buf.find(P.MAGIC)
    while 0 <= i and i + P.HEADER_SIZE <= len(buf):
        (plen,) = struct.unpack_from("<H", buf, i + 6)
        end = i + P.MIN_FRAME_SIZE + plen
        if plen <= P.MAX_PAYLOAD and end <= len(buf):
            struct.pack_into("<I", buf, end - 4, crc32c(buf[i : end - 4]))
            i = buf.find(P.MAGIC, end)
        else:
            i = buf.find(P.MAGIC, i + 1)
    return bytes(buf)


def check(data: bytes) -> None:
    flags, seed, payload = control(data)
    if flags & 1:
        payload = repair_crcs(payload)
    device = 0
    if flags & 2:
        device = struct.unpack_from("<Q", payload, 8)[0] if len(payload) >= 16 else 0x1234
    keep = KEEP_CHOICES[(flags >> 3) & 3]
    take_each = bool(flags & 4)
    c, r = codec.FrameDecoder(keep_rejects=keep), ref.RefFrameDecoder(keep_rejects=keep)
    pending: list[bytes] = []
    for chunk in chunks(payload, seed):
        seen_c, seen_r = int(c.reject_counts.sum()), int(r.reject_counts.sum())
        kept_before = len(c.rejected_frames)
        n_c, n_r = c.feed(chunk, device), r.feed(chunk, device)
        assert n_c == n_r, ("accepted", n_c, n_r)
        assert list(c.rejected_frames) == list(r.rejected_frames), "kept rejects differ"
        new_rejects = int(c.reject_counts.sum()) - seen_c
        assert new_rejects == int(r.reject_counts.sum()) - seen_r
        pending.append(chunk)
        if take_each:
            _check_batch(c.take(), r.take(), chunk, c, kept_before, new_rejects, keep)
            pending = []
    if pending:
        # several feeds in one batch: each feed is tiled, so their concatenation is too
        bc, br = c.take(), r.take()
        assert_batches_equal(bc, br)
        _check_tiling(bc, b"".join(pending), list(c.rejected_frames), keep)
        _check_frames(bc)
    assert np.array_equal(c.reject_counts, r.reject_counts)
    assert c.accepted_frames == r.accepted_frames and c.unknown_codes == r.unknown_codes
    stats = c.stats()
    assert stats["accepted_frames"] == c.accepted_frames
    assert list(stats["rejected"].values()) == c.reject_counts.tolist()


def _check_batch(bc, br, fed: bytes, c, kept_before: int, new_rejects: int, keep: int) -> None:
    """One feed, one batch: equal batches, tiled bytes, re-encodable frames."""
    assert_batches_equal(bc, br)
    assert int(bc.rejects.sum()) == new_rejects
    if kept_before + new_rejects <= keep:  # nothing of this feed was pushed out of the ring
        ring = list(c.rejected_frames)
        _check_tiling(bc, fed, ring[len(ring) - new_rejects :], keep)
    _check_frames(bc)


def assert_batches_equal(a: DecodedBatch, b: DecodedBatch) -> None:
    """Same columns, dtypes and bytes (bit for bit: NaN payloads and -0.0 included)."""
    for name, cols in TABLES.items():
        for col, dtype in cols:
            x, y = a.tables[name][col], b.tables[name][col]
            assert x.dtype == dtype == y.dtype, (name, col, x.dtype, y.dtype)
            assert x.shape == y.shape and x.tobytes() == y.tobytes(), (name, col, x, y)
    assert a.samples.dtype == b.samples.dtype == np.int16
    assert a.samples.tobytes() == b.samples.tobytes(), "samples"
    assert a.raw.tobytes() == b.raw.tobytes(), "raw"
    assert a.rejects.tolist() == b.rejects.tolist(), ("rejects", a.rejects, b.rejects)


def _check_tiling(batch: DecodedBatch, fed: bytes, rejects: list, keep: int) -> None:
    """Accepted frames and rejects of one feed cover its bytes exactly and in order."""
    if keep == 0 or len(rejects) != int(batch.rejects.sum()):
        return  # the ring did not keep them all: only the counts can be compared
    if any(len(x) == P.MAX_FRAME_SIZE for _, _, x in rejects):
        return  # the ring truncates a longer reject to MAX_FRAME_SIZE bytes
    frames = [batch.frame_bytes(i) for i in range(batch.n_frames)]
    total = sum(map(len, frames)) + sum(len(x) for _, _, x in rejects)
    assert total == len(fed), ("bytes accounted", total, len(fed))
    for reason, dev, piece in rejects:
        assert piece, ("empty reject", reason)
        if reason in RESYNC or (reason == R.LENGTH and not _crc_ok(piece)):
            assert dev == 0, ("resync reject with a device id", reason, dev)
            if not (reason == R.TRUNCATED and len(piece) < P.HEADER_SIZE):  # a tail: step 2
                assert piece.find(P.MAGIC, 1) == -1, ("resync reject hides a magic", reason)
            assert (reason == R.BAD_MAGIC) == (piece[:2] != P.MAGIC) or piece == b"V"
        else:
            assert reason in AFTER_CRC or reason == R.LENGTH, reason
            assert _crc_ok(piece), ("reject after CRC is not a CRC-valid frame", reason)
            assert dev == struct.unpack_from("<Q", piece, 8)[0]
    # in-order tiling: a frontier search over (frames used, rejects used)
    frontier = {(0, 0)}
    pos = {(0, 0): 0}
    while frontier:
        nxt = set()
        for i, j in frontier:
            p = pos[(i, j)]
            if p == len(fed) and i == len(frames) and j == len(rejects):
                return
            if i < len(frames) and fed.startswith(frames[i], p):
                pos[(i + 1, j)] = p + len(frames[i])
                nxt.add((i + 1, j))
            if j < len(rejects) and fed.startswith(rejects[j][2], p):
                pos[(i, j + 1)] = p + len(rejects[j][2])
                nxt.add((i, j + 1))
        frontier = nxt
    raise AssertionError("accepted frames and rejects do not tile the fed bytes in order")


def _crc_ok(piece: bytes) -> bool:
    if len(piece) < P.MIN_FRAME_SIZE or piece[:2] != P.MAGIC:
        return False
    (plen,) = struct.unpack_from("<H", piece, 6)
    return (
        len(piece) == P.MIN_FRAME_SIZE + plen
        and ref.crc32c(piece[:-4]) == struct.unpack_from("<I", piece, len(piece) - 4)[0]
    )


# ------------------------------------------------------------------------------ re-encoding
def _check_frames(batch: DecodedBatch) -> None:
    """Every accepted frame re-encodes from its columns (see module docstring, 5)."""
    rows = _rows_by_frame(batch)
    for i in range(batch.n_frames):
        original = batch.frame_bytes(i)
        args = _encode_args(batch, i, rows)
        ours, theirs = _encode(codec, args), _encode(ref, args)
        assert ours == theirs, ("encoders differ", args)
        again = codec.FrameDecoder().decode(ours)
        assert again.n_frames == 1 and not again.rejected(), ("re-encoded frame rejected", again.rejected())
        assert _encode_args(again, 0, _rows_by_frame(again)) == args, "content changed"
        if _canonical(original, batch, i):
            assert ours == original, ("canonical frame re-encodes differently", original.hex())


def _rows_by_frame(batch: DecodedBatch) -> dict[str, dict[int, list[int]]]:
    out: dict[str, dict[int, list[int]]] = {}
    for name in ("waveforms", "numerics", "status", "accessories", "acks", "commands"):
        idx: dict[int, list[int]] = {}
        for k, f in enumerate(batch.tables[name]["frame"].tolist()):
            idx.setdefault(f, []).append(k)
        out[name] = idx
    return out


def _encode_args(batch: DecodedBatch, i: int, rows) -> tuple:
    f = {k: v[i].item() for k, v in batch.tables["frames"].items()}
    head = (f["device_id"], f["seq"], f["ts_us"])
    t = f["frame_type"]

    def one(table: str) -> dict:
        (k,) = rows[table].get(i, [None])
        assert k is not None, (table, i)
        return {c: v[k].item() for c, v in batch.tables[table].items()}

    if t in WAVES:
        w = one("waveforms")
        s = batch.samples[w["sample_start"] : w["sample_start"] + w["n_samples"]]
        enc = batch.frame_bytes(i)[P.HEADER_SIZE + 1]
        return ("wave", t, *head, w["channel"], tuple(s.tolist()), w["fs_hz"], w["gain"],
                w["offset"], enc)
    if t == P.FrameType.NUMERICS:
        n = batch.tables["numerics"]
        entries = tuple(
            (n["code"][k].item(), n["value"][k].item(), n["status"][k].item())
            for k in rows["numerics"].get(i, [])
        )
        # NaN != NaN: compare unavailable values by their status only
        entries = tuple((c, None if s == 2 else v, s) for c, v, s in entries)
        return ("numerics", *head, entries)
    if t == P.FrameType.STATUS:
        s = one("status")
        a = batch.tables["accessories"]
        acc = tuple(
            (a["kind"][k].item(), a["serial"][k].item(), a["powered_s"][k].item())
            for k in rows["accessories"].get(i, [])
        )
        assert len(acc) == s["n_accessories"]
        return ("status", *head, s["battery"], s["flags"], s["carrier"], s["rssi"],
                s["leads_off"], s["fault"], s["powered_s"], acc)
    if t == P.FrameType.ACK:
        k = one("acks")
        return ("ack", *head, k["command_id"], k["kind"], k["status"], k["detail"])
    assert t == P.FrameType.COMMAND, t
    c = one("commands")
    return ("command", *head, c["command_id"], c["kind"], c["arg"])


def _encode(mod, args: tuple) -> bytes:
    kind, rest = args[0], args[1:]
    if kind == "wave":
        t, dev, seq, ts, ch, samples, fs, gain, off, enc = rest
        return mod.encode_waveform(t, dev, seq, ts, ch, np.array(samples, np.int16), fs, gain,
                                   off, enc)
    if kind == "numerics":
        dev, seq, ts, entries = rest
        if not entries:  # only unknown codes: nothing the encoders can rebuild
            entries = ((250, 0.0, 0),)
        return mod.encode_numerics(
            dev, seq, ts, [(c, math.nan if v is None else v, s) for c, v, s in entries]
        )
    if kind == "status":
        dev, seq, ts, bat, fl, car, rssi, leads, fault, powered, acc = rest
        return mod.encode_status(dev, seq, ts, battery=bat, flags=fl, carrier=car, rssi=rssi,
                                 leads_off=leads, fault=fault, powered_s=powered,
                                 accessories=list(acc))
    if kind == "ack":
        return mod.encode_ack(*rest)
    return mod.encode_command(*rest)


_NAN32 = struct.pack("<f", math.nan)


def _canonical(frame: bytes, batch: DecodedBatch, i: int) -> bool:
    """True if ``frame`` is what the encoders write for its content (no ignored bytes)."""
    if frame[3] != 0 or frame[5] != 0:
        return False
    pl = frame[P.HEADER_SIZE : -4]
    t = frame[4]
    if t in WAVES:
        if pl[6:8] != b"\0\0":
            return False
        if pl[1] == P.Encoding.DELTA8:
            (n,) = struct.unpack_from("<H", pl, 4)
            samples, _ = ref._undelta8(pl[P.WAVE_HEADER_SIZE :], n)
            return pl[P.WAVE_HEADER_SIZE :] == ref._delta8(samples)
        return True
    if t == P.FrameType.NUMERICS:
        if pl[1:4] != b"\0\0\0":
            return False
        for k in range(pl[0]):
            code, status, res, value = struct.unpack_from("<BBH4s", pl, 4 + 8 * k)
            if res or code not in P.NUMERIC_RANGES or (status == 2 and value != _NAN32):
                return False
        return True
    if t == P.FrameType.STATUS:
        if pl[13:16] != b"\0\0\0":
            return False
        return all(pl[P.STATUS_HEADER_SIZE + 24 * k + 1 : P.STATUS_HEADER_SIZE + 24 * k + 4]
                   == b"\0\0\0" for k in range(pl[12]))
    if t == P.FrameType.COMMAND:
        return pl[5:8] == b"\0\0\0"
    return True
