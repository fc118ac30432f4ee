"""Typed stubs of the wire-format v1 codec extension (see framecodec.pyx)."""

from collections import deque
from collections.abc import Buffer, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from vitalcore.batch import DecodedBatch

def crc32c(data: Buffer, crc: int = 0) -> int: ...
def crc32c_hardware() -> bool: ...

class FrameDecoder:
    rejected_frames: deque[tuple[int, int, bytes]]
    """Most recent rejects as (reason, device id or 0, bytes), bounded by keep_rejects."""
    accepted_frames: int
    unknown_codes: int
    def __init__(self, keep_rejects: int = 64) -> None: ...
    @property
    def reject_counts(self) -> npt.NDArray[np.int64]: ...
    def stats(self) -> dict[str, object]: ...
    def count_reject(self, reason: int, data: Buffer, device_id: int = 0) -> None: ...
    def feed(self, data: Buffer, device_id: int = 0) -> int: ...
    def take(self) -> DecodedBatch: ...
    def decode(self, data: Buffer, device_id: int = 0) -> DecodedBatch: ...

def encode_waveform(
    frame_type: int,
    device_id: int,
    seq: int,
    ts_us: int,
    channel: int,
    samples: Sequence[int] | npt.NDArray[np.integer],
    fs_hz: int,
    gain: float,
    offset: float = 0.0,
    encoding: int = 1,
) -> bytes: ...
def encode_numerics(
    device_id: int,
    seq: int,
    ts_us: int,
    entries: Iterable[tuple[int, float] | tuple[int, float, int]],
) -> bytes: ...
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
) -> bytes: ...
def encode_ack(
    device_id: int, seq: int, ts_us: int, command_id: int, kind: int, status: int, detail: int = 0
) -> bytes: ...
def encode_command(
    device_id: int, seq: int, ts_us: int, command_id: int, kind: int, arg: int = 0
) -> bytes: ...
