"""Wire format v1: the constants every encoder and decoder shares.

This module is the single source of truth for the numbers in ``docs/protocol.md``;
the Cython codec (``vitalcore._ext.framecodec``) declares the same values and the
tests check that both agree.

Layout of one frame (all integers little-endian)::

    offset  size  field
    0       2     magic "VC" (0x56 0x43)
    2       1     version major (1)
    3       1     version minor (0 for this reader)
    4       1     frame type (FrameType)
    5       1     flags (reserved, written 0, ignored by readers)
    6       2     payload length N (0..MAX_PAYLOAD)
    8       8     device id (u64, non-zero)
    16      4     sequence number (u32, per stream, wraps)
    20      8     device timestamp (i64, µs since the Unix epoch, UTC)
    28      N     payload (layout per frame type)
    28+N    4     CRC-32C of bytes 0..28+N-1
"""

from __future__ import annotations

import enum

__all__ = [
    "MAGIC",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "HEADER_SIZE",
    "TRAILER_SIZE",
    "MIN_FRAME_SIZE",
    "MAX_PAYLOAD",
    "MAX_FRAME_SIZE",
    "WAVE_HEADER_SIZE",
    "MAX_SAMPLES",
    "MAX_FS_HZ",
    "NUMERICS_HEADER_SIZE",
    "NUMERIC_ENTRY_SIZE",
    "MAX_NUMERICS",
    "STATUS_HEADER_SIZE",
    "ACCESSORY_SIZE",
    "SERIAL_SIZE",
    "MAX_ACCESSORIES",
    "ACK_SIZE",
    "COMMAND_SIZE",
    "TS_MIN_US",
    "TS_MAX_US",
    "FrameType",
    "Encoding",
    "EcgLead",
    "PlethChannel",
    "NumericCode",
    "NUMERIC_RANGES",
    "NUMERIC_UNITS",
    "NumericStatus",
    "StatusFlag",
    "Carrier",
    "AccessoryKind",
    "CommandKind",
    "AckStatus",
    "RejectReason",
    "REJECT_REASONS",
    "stream_id",
]

MAGIC = b"VC"
VERSION_MAJOR = 1
VERSION_MINOR = 0

HEADER_SIZE = 28
TRAILER_SIZE = 4
MIN_FRAME_SIZE = HEADER_SIZE + TRAILER_SIZE
MAX_PAYLOAD = 16384
MAX_FRAME_SIZE = MIN_FRAME_SIZE + MAX_PAYLOAD

#: Waveform payload: channel u8, encoding u8, fs u16, n u16, reserved u16, gain f32, offset f32.
WAVE_HEADER_SIZE = 16
MAX_SAMPLES = 8192
MAX_FS_HZ = 4000

#: Numerics payload: count u8, reserved 3 bytes, then entries of code u8, status u8,
#: reserved u16, value f32.
NUMERICS_HEADER_SIZE = 4
NUMERIC_ENTRY_SIZE = 8
MAX_NUMERICS = 64

#: Status payload: battery u8, flags u8, carrier u8, rssi i8, leads_off u16, fault u16,
#: powered_s u32, n_accessories u8, reserved 3 bytes; then accessories of kind u8,
#: reserved 3 bytes, serial 16 bytes (ASCII, NUL-padded), powered_s u32.
STATUS_HEADER_SIZE = 16
ACCESSORY_SIZE = 24
SERIAL_SIZE = 16
MAX_ACCESSORIES = 16

#: Command acknowledgement payload: command_id u32, kind u8, status u8, detail u16.
ACK_SIZE = 8
#: Command payload (server to device): command_id u32, kind u8, reserved 3 bytes, arg u32.
COMMAND_SIZE = 12

#: Accepted device timestamps: 2000-01-01T00:00:00Z <= ts < 2100-01-01T00:00:00Z.
TS_MIN_US = 946_684_800_000_000
TS_MAX_US = 4_102_444_800_000_000


class FrameType(enum.IntEnum):
    """Frame type byte (offset 4)."""

    ECG = 0x01  #: ECG waveform, one lead, samples in µV
    PLETH = 0x02  #: PPG waveform, one channel (red or IR), arbitrary units
    CUFF = 0x03  #: cuff pressure waveform during a NIBP measurement, mmHg
    NUMERICS = 0x10  #: periodic numeric values (HR, SpO2, NIBP, ...)
    STATUS = 0x20  #: device status and powered-on hours of terminal and accessories
    ACK = 0x30  #: acknowledgement of a command (device to server)
    COMMAND = 0x40  #: command (server to device)


WAVEFORM_TYPES = frozenset({FrameType.ECG, FrameType.PLETH, FrameType.CUFF})


class Encoding(enum.IntEnum):
    """Waveform sample encoding (waveform payload byte 1)."""

    RAW16 = 0  #: n little-endian int16 samples
    DELTA8 = 1  #: first sample int16, then int8 deltas; 0x80 escapes an absolute int16


class EcgLead(enum.IntEnum):
    I = 0  # noqa: E741
    II = 1
    III = 2
    AVR = 3
    AVL = 4
    AVF = 5
    V1 = 6
    V2 = 7
    V3 = 8
    V4 = 9
    V5 = 10
    V6 = 11


class PlethChannel(enum.IntEnum):
    RED = 0
    IR = 1


class NumericCode(enum.IntEnum):
    """Numeric value codes; units and accepted ranges in NUMERIC_UNITS / NUMERIC_RANGES."""

    HR = 1
    PR = 2
    SPO2 = 3
    NIBP_SYS = 4
    NIBP_DIA = 5
    NIBP_MAP = 6
    RESP_RATE = 7
    TEMP = 8
    PERF_INDEX = 9
    NIBP_PR = 10


#: Inclusive accepted range per numeric code; a valid entry outside it rejects the frame.
NUMERIC_RANGES: dict[int, tuple[float, float]] = {
    NumericCode.HR: (0.0, 350.0),
    NumericCode.PR: (0.0, 350.0),
    NumericCode.SPO2: (0.0, 100.0),
    NumericCode.NIBP_SYS: (0.0, 300.0),
    NumericCode.NIBP_DIA: (0.0, 300.0),
    NumericCode.NIBP_MAP: (0.0, 300.0),
    NumericCode.RESP_RATE: (0.0, 150.0),
    NumericCode.TEMP: (15.0, 45.0),
    NumericCode.PERF_INDEX: (0.0, 30.0),
    NumericCode.NIBP_PR: (0.0, 350.0),
}

NUMERIC_UNITS: dict[int, str] = {
    NumericCode.HR: "bpm",
    NumericCode.PR: "bpm",
    NumericCode.SPO2: "%",
    NumericCode.NIBP_SYS: "mmHg",
    NumericCode.NIBP_DIA: "mmHg",
    NumericCode.NIBP_MAP: "mmHg",
    NumericCode.RESP_RATE: "/min",
    NumericCode.TEMP: "°C",
    NumericCode.PERF_INDEX: "%",
    NumericCode.NIBP_PR: "bpm",
}


class NumericStatus(enum.IntEnum):
    VALID = 0
    QUESTIONABLE = 1  #: measured but of low quality (motion, poor perfusion)
    UNAVAILABLE = 2  #: not measured; the value is ignored and stored as NaN


class StatusFlag(enum.IntFlag):
    CHARGING = 0x01
    LEADS_OFF = 0x02  #: any ECG electrode off (details in leads_off bitmap)
    PROBE_OFF = 0x04  #: SpO2 probe off the finger
    CUFF_FAULT = 0x08
    EXTERNAL_POWER = 0x10
    LOW_SIGNAL = 0x20


class Carrier(enum.IntEnum):
    NONE = 0
    WIFI = 1
    LTE = 2
    NR = 3
    ETHERNET = 4
    NBIOT = 5
    BLE_GATEWAY = 6


class AccessoryKind(enum.IntEnum):
    LEAD_WIRE = 1
    BATTERY = 2
    COMMS_MODULE = 3
    STORAGE_CARD = 4
    SCREEN = 5
    SPO2_PROBE = 6
    NIBP_CUFF = 7


class CommandKind(enum.IntEnum):
    START_NIBP = 1
    STOP_NIBP = 2
    SET_NIBP_INTERVAL = 3  #: arg: interval in seconds, 0 = off
    SWITCH_CARRIER = 4  #: arg: Carrier
    IDENTIFY = 5  #: arg: seconds to blink/beep
    SET_TIME = 6  #: arg: server time, seconds since the Unix epoch (u32)


class AckStatus(enum.IntEnum):
    ACCEPTED = 0
    COMPLETED = 1
    FAILED = 2
    BUSY = 3
    UNSUPPORTED = 4


class RejectReason(enum.IntEnum):
    """Why a frame (or a run of bytes) was rejected. Values index the reject counters."""

    BAD_MAGIC = 0  #: bytes that do not start with "VC" (garbage between frames)
    TRUNCATED = 1  #: the buffer ends before the frame does
    BAD_VERSION = 2  #: major version is not 1
    LENGTH = 3  #: payload length over MAX_PAYLOAD or inconsistent with its contents
    CHECKSUM = 4  #: CRC-32C mismatch
    UNKNOWN_TYPE = 5  #: frame type this reader does not know
    VALUE_RANGE = 6  #: a field outside its accepted range (fs, gain, timestamp, numeric, ...)
    DEVICE_MISMATCH = 7  #: device id differs from the authenticated device
    BAD_JSON = 8  #: a JSON document that is not valid JSON or not of the JSON frame schema


REJECT_REASONS: tuple[str, ...] = tuple(r.name.lower() for r in RejectReason)


def stream_id(frame_type: int, channel: int) -> int:
    """Stream id of a frame within its device: ``frame_type << 8 | channel``.

    Sequence numbers count per (device id, stream id).
    """
    return (frame_type << 8) | channel
