"""Compact binary encoding of decimated live waveform segments, for browsers.

A *message* is what one subscriber receives per flush: a 4-byte header then
``count`` *packets*, all little-endian (a browser reads them with ``DataView``)::

    message  = magic "LW" (2 bytes) | version u8 (=1) | count u8 | packet * count
    packet   = device_id u64 | t0_us i64 | frame_type u8 | channel u8 | fs_hz u16
             | n u16 | reserved u16 (=0) | gain f32 | offset f32 | n * i16 samples

``t0_us`` is the device time of the first sample (µs since the Unix epoch), ``fs_hz``
the rate after decimation (Hz), and sample ``i`` has the physical value
``raw[i] * gain + offset`` in the unit of the frame type (ECG µV, pleth arbitrary
units, cuff mmHg) at time ``t0_us + i * 1e6 / fs_hz``. A packet header is
:data:`PACKET_HEADER` (32) bytes; at most :data:`MAX_SAMPLES` samples and
:data:`MAX_PACKETS` packets per message (a larger flush is split over messages).

Pure functions, no I/O: :func:`encode_packet`, :func:`encode_message`,
:func:`decode_message` (the reference decoder; the dashboard's JavaScript mirrors it).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import PeerDataError, UsageError

__all__ = ["MAGIC", "VERSION", "PACKET_HEADER", "MESSAGE_HEADER", "MAX_SAMPLES", "MAX_PACKETS",
           "WavePacket", "encode_packet", "encode_message", "decode_message"]

MAGIC = b"LW"
VERSION = 1
_MSG = struct.Struct("<2sBB")
_PKT = struct.Struct("<QqBBHHHff")
MESSAGE_HEADER = _MSG.size  #: bytes, 4
PACKET_HEADER = _PKT.size  #: bytes, 32
MAX_SAMPLES = 0xFFFF  #: samples per packet (u16 count)
MAX_PACKETS = 0xFF  #: packets per message (u8 count)


class WavePacket(NamedTuple):
    """One decoded segment of one waveform stream."""

    device_id: int
    t0_us: int  #: device time of sample 0, µs since the Unix epoch
    frame_type: int  #: :class:`vitalcore.protocol.FrameType`
    channel: int
    fs_hz: int  #: sample rate of ``samples``, Hz
    gain: float  #: physical = raw * gain + offset (ECG µV, pleth a.u., cuff mmHg)
    offset: float
    samples: np.ndarray  #: int16 raw samples

    def values(self) -> np.ndarray:
        """Samples in physical units (float64)."""
        return self.samples.astype(np.float64) * self.gain + self.offset


def encode_packet(device_id: int, t0_us: int, frame_type: int, channel: int, fs_hz: int,
                  gain: float, offset: float, samples: np.ndarray) -> bytes:
    """One packet (header + int16 samples); :class:`UsageError` on impossible fields."""
    if not 0 <= device_id < 1 << 64 or not 0 < fs_hz <= 0xFFFF:
        raise UsageError(f"bad device id {device_id!r} or fs {fs_hz!r} Hz")
    if not 0 <= frame_type <= 0xFF or not 0 <= channel <= 0xFF:
        raise UsageError(f"bad frame type {frame_type!r} or channel {channel!r}")
    s = np.ascontiguousarray(samples, dtype="<i2")
    if s.ndim != 1 or len(s) > MAX_SAMPLES:
        raise UsageError(f"samples must be 1-d with at most {MAX_SAMPLES} values")
    return _PKT.pack(device_id, t0_us, frame_type, channel, fs_hz, len(s), 0, gain,
                     offset) + s.tobytes()


def encode_message(packets: Sequence[bytes]) -> bytes:
    """Concatenate up to :data:`MAX_PACKETS` packets behind a message header."""
    if len(packets) > MAX_PACKETS:
        raise UsageError(f"at most {MAX_PACKETS} packets per message, got {len(packets)}")
    return b"".join([_MSG.pack(MAGIC, VERSION, len(packets)), *packets])


def decode_message(data: bytes | bytearray | memoryview) -> list[WavePacket]:
    """Decode a message; :class:`~vitalcore.errors.PeerDataError` if malformed.

    Every length is checked against the buffer before it is read; trailing bytes after
    the last packet are an error (a message is exactly its packets).
    """
    mv = memoryview(data).cast("B")
    if len(mv) < MESSAGE_HEADER:
        raise PeerDataError(f"live message of {len(mv)} bytes is shorter than its header")
    magic, version, count = _MSG.unpack_from(mv)
    if magic != MAGIC or version != VERSION:
        raise PeerDataError(f"not a live waveform message v{VERSION} (magic {bytes(magic)!r}, "
                            f"version {version})")
    out: list[WavePacket] = []
    pos = MESSAGE_HEADER
    for i in range(count):
        if pos + PACKET_HEADER > len(mv):
            raise PeerDataError(f"packet {i} header truncated at byte {pos}")
        dev, t0, ftype, ch, fs, n, _, gain, offset = _PKT.unpack_from(mv, pos)
        pos += PACKET_HEADER
        if pos + 2 * n > len(mv):
            raise PeerDataError(f"packet {i}: {n} samples exceed the message")
        if fs == 0:
            raise PeerDataError(f"packet {i}: sample rate 0 Hz")
        samples = np.frombuffer(mv, "<i2", n, pos).astype(np.int16)
        pos += 2 * n
        out.append(WavePacket(dev, t0, ftype, ch, fs, gain, offset, samples))
    if pos != len(mv):
        raise PeerDataError(f"{len(mv) - pos} bytes after the last packet")
    return out
