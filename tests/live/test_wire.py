from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import PeerDataError, UsageError
from vitalcore.live.wire import (
    MESSAGE_HEADER,
    PACKET_HEADER,
    decode_message,
    encode_message,
    encode_packet,
)


def test_round_trip_and_sizes():
    s = np.array([-32768, -1, 0, 1, 32767], np.int16)
    p1 = encode_packet(0xFFFF_FFFF_FFFF_FFFF, 1_764_115_200_123_456, 1, 1, 125, 2.5, -1.0, s)
    p2 = encode_packet(7, -5, 2, 1, 50, 1.0, 0.0, s[:0])
    assert len(p1) == PACKET_HEADER + 2 * len(s)
    msg = encode_message([p1, p2])
    assert len(msg) == MESSAGE_HEADER + len(p1) + len(p2)
    a, b = decode_message(msg)
    assert a.device_id == 0xFFFF_FFFF_FFFF_FFFF and a.t0_us == 1_764_115_200_123_456
    assert (a.frame_type, a.channel, a.fs_hz, a.gain, a.offset) == (1, 1, 125, 2.5, -1.0)
    np.testing.assert_array_equal(a.samples, s)
    np.testing.assert_allclose(a.values(), s * 2.5 - 1.0)
    assert b.t0_us == -5 and len(b.samples) == 0


@pytest.mark.parametrize("kw", [dict(fs_hz=0), dict(device_id=-1), dict(frame_type=256),
                                dict(samples=np.zeros((2, 2), np.int16))])
def test_encode_refuses_impossible_fields(kw):
    args = dict(device_id=1, t0_us=0, frame_type=1, channel=0, fs_hz=125, gain=1.0, offset=0.0,
                samples=np.zeros(3, np.int16))
    args.update(kw)
    with pytest.raises(UsageError):
        encode_packet(**args)


def test_decode_refuses_bad_header_and_trailing_bytes():
    good = encode_message([encode_packet(1, 0, 1, 0, 125, 1.0, 0.0, np.arange(4, dtype=np.int16))])
    for bad in (b"", b"LW", b"XX\x01\x00", b"LW\x02\x00", good + b"\x00", good[:-1],
                good[:MESSAGE_HEADER + 5]):
        with pytest.raises(PeerDataError):
            decode_message(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_bytes_never_crash(data):
    try:
        out = decode_message(b"LW\x01" + data)
    except PeerDataError:
        return
    # accepted: re-encoding gives back exactly the same bytes
    again = encode_message([encode_packet(p.device_id, p.t0_us, p.frame_type, p.channel,
                                          p.fs_hz, p.gain, p.offset, p.samples) for p in out])
    assert again == b"LW\x01" + data or np.isnan([p.gain for p in out] +
                                                  [p.offset for p in out]).any()
