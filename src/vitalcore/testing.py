"""Hypothesis strategies for wire-format v1 frames.

For vitalcore's own tests and for integrators who property-test their device
encoders or pipelines against ours. Needs ``hypothesis`` (a test dependency, imported
only here).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from . import codec
from . import protocol as P

__all__ = [
    "TS",
    "devices",
    "seqs",
    "stamps",
    "waveform_args",
    "numerics_args",
    "status_args",
    "any_frame",
]

#: A fixed device timestamp for examples: 2025-11-26T00:00:00Z in µs.
TS = 1_764_115_200_000_000

devices = st.integers(1, 2**64 - 1)
seqs = st.integers(0, 2**32 - 1)
stamps = st.integers(P.TS_MIN_US, P.TS_MAX_US - 1)
_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_serials = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=16)


@st.composite
def waveform_args(draw):
    """Keyword arguments of ``encode_waveform``: smooth, random or extreme samples."""
    ftype = draw(st.sampled_from([P.FrameType.ECG, P.FrameType.PLETH, P.FrameType.CUFF]))
    channel = draw(st.integers(0, {1: 11, 2: 1, 3: 0}[ftype]))
    n = draw(st.integers(1, 600))
    kind = draw(st.sampled_from(["smooth", "random", "extreme"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "smooth":
        x = np.cumsum(rng.integers(-40, 40, n)).clip(-32768, 32767)
    elif kind == "random":
        x = rng.integers(-32768, 32768, n)
    else:
        x = rng.choice([-32768, 32767, 0, -1, 127, -127, 128, -128], n)
    return dict(
        frame_type=int(ftype),
        device_id=draw(devices),
        seq=draw(seqs),
        ts_us=draw(stamps),
        channel=channel,
        samples=x.astype(np.int16),
        fs_hz=draw(st.integers(1, P.MAX_FS_HZ)),
        gain=draw(_f32.filter(lambda g: g != 0)),
        offset=draw(_f32),
        encoding=draw(st.sampled_from([0, 1])),
    )


_numeric_entry = st.sampled_from(sorted(P.NUMERIC_RANGES)).flatmap(
    lambda code: st.tuples(
        st.just(code), st.floats(*P.NUMERIC_RANGES[code], width=32), st.sampled_from([0, 1, 2])
    )
)


@st.composite
def numerics_args(draw):
    """Keyword arguments of ``encode_numerics`` with in-range values."""
    return dict(
        device_id=draw(devices),
        seq=draw(seqs),
        ts_us=draw(stamps),
        entries=draw(st.lists(_numeric_entry, min_size=1, max_size=P.MAX_NUMERICS)),
    )


@st.composite
def status_args(draw):
    """Keyword arguments of ``encode_status`` (device_id, seq, ts_us included)."""
    return dict(
        device_id=draw(devices),
        seq=draw(seqs),
        ts_us=draw(stamps),
        battery=draw(st.one_of(st.integers(0, 100), st.just(255))),
        flags=draw(st.integers(0, 255)),
        carrier=draw(st.integers(0, 255)),
        rssi=draw(st.integers(-128, 127)),
        leads_off=draw(st.integers(0, 0xFFFF)),
        fault=draw(st.integers(0, 0xFFFF)),
        powered_s=draw(st.integers(0, 2**32 - 1)),
        accessories=draw(
            st.lists(
                st.tuples(st.integers(0, 255), _serials, st.integers(0, 2**32 - 1)),
                max_size=P.MAX_ACCESSORIES,
            )
        ),
    )


@st.composite
def any_frame(draw, enc=codec):
    """One valid binary frame of any type, built by the encoders of module ``enc``."""
    kind = draw(st.sampled_from(["wave", "numerics", "status", "ack", "command"]))
    if kind == "wave":
        return enc.encode_waveform(**draw(waveform_args()))
    if kind == "numerics":
        return enc.encode_numerics(**draw(numerics_args()))
    if kind == "status":
        a = draw(status_args())
        return enc.encode_status(a.pop("device_id"), a.pop("seq"), a.pop("ts_us"), **a)
    common = (draw(devices), draw(seqs), draw(stamps), draw(st.integers(0, 2**32 - 1)))
    if kind == "ack":
        return enc.encode_ack(
            *common,
            draw(st.integers(0, 255)),
            draw(st.integers(0, 4)),
            draw(st.integers(0, 0xFFFF)),
        )
    return enc.encode_command(*common, draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1)))
