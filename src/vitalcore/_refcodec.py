"""Pure-Python reference twin of the wire-format v1 codec.

Slow and simple on purpose: it is the executable form of ``docs/protocol.md``. The
tests decode the same bytes with it and with the Cython codec and require identical
batches, reject counts and kept rejects. Runtime code never falls back to it.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from . import protocol as P
from .batch import TABLES, DecodedBatch
from .errors import UsageError

__all__ = [
    "crc32c",
    "RefFrameDecoder",
    "encode_waveform",
    "encode_numerics",
    "encode_status",
    "encode_ack",
    "encode_command",
    "check_header",
    "check_waveform",
    "check_numerics",
    "check_status",
    "check_ack",
    "check_command",
]

R = P.RejectReason


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli, reflected, init and final XOR 0xFFFFFFFF)."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


_HEADER = struct.Struct("<2sBBBBHQIq")
_WAVE = struct.Struct("<BBHHHff")
_NUMERIC = struct.Struct("<BBHf")
_STATUS = struct.Struct("<BBBbHHIB3x")
_ACCESSORY = struct.Struct("<B3x16sI")
_ACK = struct.Struct("<IBBH")
_COMMAND = struct.Struct("<IB3xI")

_CHANNEL_MAX = {P.FrameType.ECG: 11, P.FrameType.PLETH: 1, P.FrameType.CUFF: 0}
_KNOWN_TYPES = frozenset(int(t) for t in P.FrameType)


# ---------------------------------------------------------------------------- encoding
def check_header(device_id: int, seq: int, ts_us: int, payload_len: int) -> None:
    """Raise UsageError unless the header fields and payload size are encodable."""
    if not 0 < device_id < 1 << 64:
        raise UsageError(f"device_id must be in 1..2**64-1, got {device_id}")
    if not 0 <= seq < 1 << 32:
        raise UsageError(f"seq must be in 0..2**32-1, got {seq}")
    if not P.TS_MIN_US <= ts_us < P.TS_MAX_US:
        raise UsageError(f"ts_us out of range (2000..2100 in µs since the epoch): {ts_us}")
    if payload_len > P.MAX_PAYLOAD:
        raise UsageError(f"payload of {payload_len} bytes exceeds {P.MAX_PAYLOAD}")


def _frame(frame_type: int, device_id: int, seq: int, ts_us: int, payload: bytes) -> bytes:
    check_header(device_id, seq, ts_us, len(payload))
    head = _HEADER.pack(
        P.MAGIC, P.VERSION_MAJOR, P.VERSION_MINOR, frame_type, 0, len(payload), device_id, seq, ts_us
    )
    body = head + payload
    return body + struct.pack("<I", crc32c(body))


def _delta8(samples: np.ndarray) -> bytes:
    out = bytearray(struct.pack("<h", int(samples[0])))
    prev = int(samples[0])
    for s in samples[1:].tolist():
        d = s - prev
        if -127 <= d <= 127:
            out += struct.pack("<b", d)
        else:
            out += b"\x80" + struct.pack("<h", s)
        prev = s
    return bytes(out)


def check_waveform(
    frame_type: int,
    channel: int,
    samples: Sequence[int] | np.ndarray,
    fs_hz: int,
    gain: float,
    offset: float,
    encoding: int,
) -> tuple[np.ndarray, float, float]:
    """Validate waveform arguments; return (contiguous int16 samples, gain, offset as float32)."""
    if frame_type not in _CHANNEL_MAX:
        raise UsageError(f"not a waveform frame type: {frame_type}")
    if not 0 <= channel <= _CHANNEL_MAX[frame_type]:
        raise UsageError(f"channel {channel} invalid for frame type {frame_type}")
    if encoding not in (P.Encoding.RAW16, P.Encoding.DELTA8):
        raise UsageError(f"unknown encoding {encoding}")
    a = np.asarray(samples)
    if a.ndim != 1 or not 1 <= len(a) <= P.MAX_SAMPLES:
        raise UsageError(f"samples must be 1-D with 1..{P.MAX_SAMPLES} values")
    if a.dtype != np.int16:
        if a.dtype.kind not in "iu" or a.min() < -32768 or a.max() > 32767:
            raise UsageError("samples must be integers that fit int16")
        a = a.astype(np.int16)
    if not 1 <= fs_hz <= P.MAX_FS_HZ:
        raise UsageError(f"fs_hz must be in 1..{P.MAX_FS_HZ}, got {fs_hz}")
    g, o = float(np.float32(gain)), float(np.float32(offset))
    if not (math.isfinite(g) and g != 0.0 and math.isfinite(o)):
        raise UsageError("gain must be finite and non-zero, offset finite (as float32)")
    return np.ascontiguousarray(a), g, o


def encode_waveform(
    frame_type: int,
    device_id: int,
    seq: int,
    ts_us: int,
    channel: int,
    samples: Sequence[int] | np.ndarray,
    fs_hz: int,
    gain: float,
    offset: float = 0.0,
    encoding: int = P.Encoding.DELTA8,
) -> bytes:
    """Encode one waveform frame (ECG, PLETH or CUFF) of raw int16 ``samples``.

    ``ts_us`` is the device time of the first sample; physical value is
    ``raw * gain + offset`` (µV for ECG, mmHg for CUFF, arbitrary units for PLETH).
    """
    a, g, o = check_waveform(frame_type, channel, samples, fs_hz, gain, offset, encoding)
    if encoding == P.Encoding.RAW16:
        data = a.astype("<i2").tobytes()
    else:
        data = _delta8(a)
    payload = _WAVE.pack(channel, encoding, fs_hz, len(a), 0, g, o) + data
    return _frame(frame_type, device_id, seq, ts_us, payload)


#: Smallest magnitude that rounds to infinity as IEEE binary32 (round to nearest even).
_F32_OVERFLOW = 2.0**128 - 2.0**103


def check_numerics(
    entries: Iterable[tuple[int, float] | tuple[int, float, int]],
) -> list[tuple[int, int, float]]:
    """Validate ``(code, value[, status])`` entries; return ``(code, status, value)`` rows."""
    rows = []
    for e in entries:
        code, value = int(e[0]), float(e[1])
        status = int(e[2]) if len(e) > 2 else P.NumericStatus.VALID
        if not 0 <= code <= 255 or status not in (0, 1, 2):
            raise UsageError(f"bad numeric entry {e!r}")
        if math.isfinite(value) and abs(value) >= _F32_OVERFLOW:
            # checked for every status and code: the value is written as f32 either way
            raise UsageError(f"numeric code {code} value {value} does not fit float32")
        if status != P.NumericStatus.UNAVAILABLE and code in P.NUMERIC_RANGES:
            lo, hi = P.NUMERIC_RANGES[code]
            if not lo <= value <= hi:
                raise UsageError(f"numeric code {code} value {value} outside {lo}..{hi}")
        rows.append((code, status, value))
    if not 1 <= len(rows) <= P.MAX_NUMERICS:
        raise UsageError(f"a numerics frame holds 1..{P.MAX_NUMERICS} entries, got {len(rows)}")
    return rows


def encode_numerics(
    device_id: int,
    seq: int,
    ts_us: int,
    entries: Iterable[tuple[int, float] | tuple[int, float, int]],
) -> bytes:
    """Encode a numerics frame from ``(code, value[, status])`` entries."""
    rows = check_numerics(entries)
    body = b"".join(_NUMERIC.pack(code, status, 0, value) for code, status, value in rows)
    n = len(rows)
    payload = struct.pack("<B3x", n) + body
    return _frame(P.FrameType.NUMERICS, device_id, seq, ts_us, payload)


def serial_bytes(serial: str | bytes) -> bytes:
    if isinstance(serial, str):
        # non-ASCII text fails the printable check below (UsageError, not UnicodeEncodeError)
        b = serial.encode("ascii") if serial.isascii() else b"\0"
    else:
        b = bytes(serial)
    if not 1 <= len(b) <= P.SERIAL_SIZE or any(c < 0x20 or c > 0x7E for c in b):
        raise UsageError(f"serial must be 1..16 printable ASCII characters: {serial!r}")
    return b


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UsageError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)


def check_status(
    battery: int,
    flags: int,
    carrier: int,
    rssi: int,
    leads_off: int,
    fault: int,
    powered_s: int,
    accessories: Iterable[tuple[int, str | bytes, int]],
) -> list[tuple[int, bytes, int]]:
    """Validate status arguments; return accessories as ``(kind, serial bytes, powered_s)``."""
    if not (0 <= battery <= 100 or battery == 255):
        raise UsageError(f"battery must be 0..100 or 255, got {battery}")
    for name, value in (("flags", flags), ("carrier", carrier)):
        _check_int(name, value, 0, 0xFF)
    _check_int("rssi", rssi, -128, 127)
    _check_int("leads_off", leads_off, 0, 0xFFFF)
    _check_int("fault", fault, 0, 0xFFFF)
    _check_int("powered_s", powered_s, 0, 0xFFFFFFFF)
    acc = [
        (
            _check_int("accessory kind", k, 0, 0xFF),
            serial_bytes(s),
            _check_int("accessory powered_s", h, 0, 0xFFFFFFFF),
        )
        for k, s, h in accessories
    ]
    if len(acc) > P.MAX_ACCESSORIES:
        raise UsageError(f"at most {P.MAX_ACCESSORIES} accessories")
    return acc


def check_ack(command_id: int, kind: int, status: int, detail: int) -> None:
    _check_int("command_id", command_id, 0, 0xFFFFFFFF)
    _check_int("kind", kind, 0, 0xFF)
    _check_int("ack status", status, 0, max(P.AckStatus))
    _check_int("detail", detail, 0, 0xFFFF)


def check_command(command_id: int, kind: int, arg: int) -> None:
    _check_int("command_id", command_id, 0, 0xFFFFFFFF)
    _check_int("kind", kind, 0, 0xFF)
    _check_int("arg", arg, 0, 0xFFFFFFFF)


def encode_status(
    device_id: int,
    seq: int,
    ts_us: int,
    *,
    battery: int = 255,
    flags: int = 0,
    carrier: int = 0,
    rssi: int = -128,
    leads_off: int = 0,
    fault: int = 0,
    powered_s: int = 0,
    accessories: Iterable[tuple[int, str | bytes, int]] = (),
) -> bytes:
    """Encode a device status frame.

    ``battery`` in % (255 unknown), ``rssi`` in dBm (-128 unknown), ``powered_s`` the
    terminal's cumulative powered-on seconds; ``accessories`` are
    ``(kind, serial, powered_s)``.
    """
    acc = check_status(battery, flags, carrier, rssi, leads_off, fault, powered_s, accessories)
    payload = _STATUS.pack(battery, flags, carrier, rssi, leads_off, fault, powered_s, len(acc))
    payload += b"".join(_ACCESSORY.pack(k, s, h) for k, s, h in acc)
    return _frame(P.FrameType.STATUS, device_id, seq, ts_us, payload)


def encode_ack(
    device_id: int, seq: int, ts_us: int, command_id: int, kind: int, status: int, detail: int = 0
) -> bytes:
    """Encode a command acknowledgement (device to server)."""
    check_ack(command_id, kind, status, detail)
    return _frame(P.FrameType.ACK, device_id, seq, ts_us, _ACK.pack(command_id, kind, status, detail))


def encode_command(
    device_id: int, seq: int, ts_us: int, command_id: int, kind: int, arg: int = 0
) -> bytes:
    """Encode a command (server to device)."""
    check_command(command_id, kind, arg)
    return _frame(P.FrameType.COMMAND, device_id, seq, ts_us, _COMMAND.pack(command_id, kind, arg))


# ---------------------------------------------------------------------------- decoding
class _Reject(Exception):
    def __init__(self, reason: R) -> None:
        self.reason = reason


class RefFrameDecoder:
    """Reference decoder with the same interface and results as ``FrameDecoder``.

    ``feed(buf, device_id=0)`` decodes every frame in ``buf`` and appends it to the
    pending batch (``device_id`` non-zero rejects frames of any other device);
    ``take()`` returns the pending batch and starts a new one.
    """

    def __init__(self, keep_rejects: int = 64) -> None:
        if keep_rejects < 0:
            raise UsageError("keep_rejects must be >= 0")
        self.rejected_frames: deque[tuple[int, int, bytes]] = deque(maxlen=keep_rejects or None)
        self._keep = keep_rejects
        self.reject_counts = np.zeros(len(P.REJECT_REASONS), np.int64)
        self.accepted_frames = 0
        self.unknown_codes = 0
        self._reset()

    def _reset(self) -> None:
        self._rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
        self._samples: list[np.ndarray] = []
        self._n_samples = 0
        self._raw = bytearray()
        self._batch_rejects = np.zeros(len(P.REJECT_REASONS), np.int64)

    def count_reject(self, reason: int, data: bytes, device_id: int = 0) -> None:
        """Count (and keep) a reject found by a companion parser, e.g. the JSON one."""
        if reason not in set(R):
            raise UsageError(f"unknown reject reason {reason}")
        self._reject(R(reason), bytes(data), device_id)

    def feed(self, buf: bytes | bytearray | memoryview, device_id: int = 0) -> int:
        data = bytes(buf)
        n = len(data)
        p = 0
        accepted = 0
        while p < n:
            if data[p : p + 2] != P.MAGIC:
                if data[p:] == P.MAGIC[:1]:  # a lone "V" at the end: a frame cut short
                    self._reject(R.TRUNCATED, data[p:])
                    break
                q = _find_magic(data, p + 1)
                self._reject(R.BAD_MAGIC, data[p:q])
                p = q
                continue
            if n - p < P.HEADER_SIZE:
                self._reject(R.TRUNCATED, data[p:])
                break
            _, major, minor, ftype, _, plen, dev, seq, ts = _HEADER.unpack_from(data, p)
            if major != P.VERSION_MAJOR:
                q = _find_magic(data, p + 1)
                self._reject(R.BAD_VERSION, data[p:q])
                p = q
                continue
            if plen > P.MAX_PAYLOAD:
                q = _find_magic(data, p + 1)
                self._reject(R.LENGTH, data[p:q])
                p = q
                continue
            total = P.MIN_FRAME_SIZE + plen
            if p + total > n:
                q = _find_magic(data, p + 1)
                self._reject(R.TRUNCATED, data[p:q])
                p = q
                continue
            end = p + total
            (stored,) = struct.unpack_from("<I", data, end - 4)
            if crc32c(data[p : end - 4]) != stored:
                q = _find_magic(data, p + 1)  # never trust a length that failed its CRC
                self._reject(R.CHECKSUM, data[p:q])
                p = q
                continue
            frame = data[p:end]
            try:
                if ftype not in _KNOWN_TYPES:
                    raise _Reject(R.UNKNOWN_TYPE)
                if dev == 0 or not P.TS_MIN_US <= ts < P.TS_MAX_US:
                    raise _Reject(R.VALUE_RANGE)
                if device_id and dev != device_id:
                    raise _Reject(R.DEVICE_MISMATCH)
                fi = len(self._rows["frames"])
                rows = self._payload(fi, ftype, minor, dev, seq, ts, data[p + P.HEADER_SIZE : end - 4])
            except _Reject as r:
                self._reject(r.reason, frame, dev)
            else:
                channel = data[p + P.HEADER_SIZE] if ftype in _CHANNEL_MAX else 0
                self._rows["frames"].append((dev, ftype, channel, seq, ts, len(self._raw), total))
                self._raw += frame
                for table, row, samples in rows:
                    self._rows[table].append(row)
                    if samples is not None:
                        self._samples.append(samples)
                        self._n_samples += len(samples)
                accepted += 1
            p = end
        self.accepted_frames += accepted
        return accepted

    def _payload(self, fi: int, ftype: int, minor: int, dev: int, seq: int, ts: int, pl: bytes):
        exact = minor <= P.VERSION_MINOR

        def need(size: int) -> None:
            if len(pl) < size or (exact and len(pl) != size):
                raise _Reject(R.LENGTH)

        if ftype in _CHANNEL_MAX:
            if len(pl) < P.WAVE_HEADER_SIZE:
                raise _Reject(R.LENGTH)
            ch, enc, fs, ns, _, gain, off = _WAVE.unpack_from(pl)
            if (
                ch > _CHANNEL_MAX[ftype]
                or enc not in (0, 1)
                or not 1 <= fs <= P.MAX_FS_HZ
                or not 1 <= ns <= P.MAX_SAMPLES
                or not math.isfinite(gain)
                or gain == 0.0
                or not math.isfinite(off)
            ):
                raise _Reject(R.VALUE_RANGE)
            data = pl[P.WAVE_HEADER_SIZE :]
            if enc == P.Encoding.RAW16:
                need(P.WAVE_HEADER_SIZE + 2 * ns)
                samples = np.frombuffer(data, "<i2", ns).astype(np.int16)
            else:
                samples, used = _undelta8(data, ns)
                need(P.WAVE_HEADER_SIZE + used)
            row = (fi, dev, ftype, ch, seq, ts, fs, gain, off, self._n_samples, ns)
            return [("waveforms", row, samples)]
        if ftype == P.FrameType.NUMERICS:
            if len(pl) < P.NUMERICS_HEADER_SIZE:
                raise _Reject(R.LENGTH)
            count = pl[0]
            if not 1 <= count <= P.MAX_NUMERICS:
                raise _Reject(R.VALUE_RANGE)
            need(P.NUMERICS_HEADER_SIZE + P.NUMERIC_ENTRY_SIZE * count)
            rows = []
            unknown = 0
            for i in range(count):
                code, status, _, value = _NUMERIC.unpack_from(pl, 4 + 8 * i)
                if status > 2:
                    raise _Reject(R.VALUE_RANGE)
                rng = P.NUMERIC_RANGES.get(code)
                if rng is None:
                    unknown += 1
                    continue
                if status == P.NumericStatus.UNAVAILABLE:
                    value = math.nan
                elif not (math.isfinite(value) and rng[0] <= value <= rng[1]):
                    raise _Reject(R.VALUE_RANGE)
                rows.append(("numerics", (fi, dev, seq, ts, code, status, value), None))
            self.unknown_codes += unknown
            return rows
        if ftype == P.FrameType.STATUS:
            if len(pl) < P.STATUS_HEADER_SIZE:
                raise _Reject(R.LENGTH)
            bat, flags, carrier, rssi, leads, fault, powered, nacc = _STATUS.unpack_from(pl)
            if nacc > P.MAX_ACCESSORIES or (bat > 100 and bat != 255):
                raise _Reject(R.VALUE_RANGE)
            need(P.STATUS_HEADER_SIZE + P.ACCESSORY_SIZE * nacc)
            rows = [("status", (fi, dev, seq, ts, bat, flags, carrier, rssi, leads, fault, powered, nacc), None)]
            for i in range(nacc):
                kind, serial, hours = _ACCESSORY.unpack_from(pl, P.STATUS_HEADER_SIZE + 24 * i)
                if not _valid_serial(serial):
                    raise _Reject(R.VALUE_RANGE)
                rows.append(("accessories", (fi, dev, ts, kind, serial.rstrip(b"\0"), hours), None))
            return rows
        if ftype == P.FrameType.ACK:
            need(P.ACK_SIZE)
            cid, kind, status, detail = _ACK.unpack_from(pl)
            if status > max(P.AckStatus):
                raise _Reject(R.VALUE_RANGE)
            return [("acks", (fi, dev, seq, ts, cid, kind, status, detail), None)]
        need(P.COMMAND_SIZE)  # COMMAND
        cid, kind, arg = _COMMAND.unpack_from(pl)
        return [("commands", (fi, dev, seq, ts, cid, kind, arg), None)]

    def _reject(self, reason: R, data: bytes, dev: int = 0) -> None:
        self._batch_rejects[reason] += 1
        self.reject_counts[reason] += 1
        if self._keep:
            self.rejected_frames.append((int(reason), dev, data[: P.MAX_FRAME_SIZE]))

    def take(self) -> DecodedBatch:
        tables = {}
        for name, cols in TABLES.items():
            rows = self._rows[name]
            tables[name] = {
                col: np.array([r[i] for r in rows], dtype=dt) for i, (col, dt) in enumerate(cols)
            }
        samples = np.concatenate(self._samples) if self._samples else np.empty(0, np.int16)
        batch = DecodedBatch(
            tables, samples, np.frombuffer(bytes(self._raw), np.uint8).copy(), self._batch_rejects
        )
        self._reset()
        return batch

    def decode(self, buf: bytes | bytearray | memoryview, device_id: int = 0) -> DecodedBatch:
        """``feed`` then ``take``: decode one buffer into a batch of its own."""
        self.feed(buf, device_id)
        return self.take()


def _find_magic(data: bytes, start: int) -> int:
    q = data.find(P.MAGIC, start)
    return len(data) if q < 0 else q


def _undelta8(data: bytes, n: int) -> tuple[np.ndarray, int]:
    """Decode ``n`` DELTA8 samples; return them and the number of bytes used."""
    if len(data) < 2:
        raise _Reject(R.LENGTH)
    out = np.empty(n, np.int16)
    (prev,) = struct.unpack_from("<h", data)
    out[0] = prev
    i = 2
    for k in range(1, n):
        if i >= len(data):
            raise _Reject(R.LENGTH)
        b = data[i]
        if b == 0x80:
            if i + 3 > len(data):
                raise _Reject(R.LENGTH)
            (prev,) = struct.unpack_from("<h", data, i + 1)
            i += 3
        else:
            prev = (prev + (b - 256 if b > 127 else b) + 32768) % 65536 - 32768
            i += 1
        out[k] = prev
    return out, i


def _valid_serial(serial: bytes) -> bool:
    text = serial.rstrip(b"\0")
    return 0 < len(text) and all(0x20 <= c <= 0x7E for c in text)
