"""Wire-format v1 codec: the Cython codec against its pure-Python reference twin.

Every decoding test runs on both decoders (``decoder`` fixture); equivalence tests
require identical batches, reject counts and kept rejects from both.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import _refcodec as ref
from vitalcore import codec
from vitalcore import protocol as P
from vitalcore._ext.framecodec import _crc32c_portable
from vitalcore.batch import TABLES, DecodedBatch
from vitalcore.errors import UsageError
from vitalcore.testing import TS, any_frame, numerics_args, status_args, waveform_args

R = P.RejectReason
DECODERS = {"cython": codec.FrameDecoder, "reference": ref.RefFrameDecoder}
ENCODERS = {"cython": codec, "reference": ref}


@pytest.fixture(params=list(DECODERS))
def decoder(request):
    return DECODERS[request.param]()


def assert_batches_equal(a: DecodedBatch, b: DecodedBatch) -> None:
    for name, cols in TABLES.items():
        for col, dtype in cols:
            x, y = a.tables[name][col], b.tables[name][col]
            assert x.dtype == dtype == y.dtype, (name, col)
            assert np.array_equal(x, y, equal_nan=dtype.kind == "f"), (name, col, x, y)
    assert np.array_equal(a.samples, b.samples)
    assert np.array_equal(a.raw, b.raw)
    assert np.array_equal(a.rejects, b.rejects)


def decode_both(buf: bytes, device_id: int = 0) -> DecodedBatch:
    """Decode with both decoders, assert they agree in every respect, return one batch."""
    c, r = codec.FrameDecoder(keep_rejects=1000), ref.RefFrameDecoder(keep_rejects=1000)
    bc, br = c.decode(buf, device_id), r.decode(buf, device_id)
    assert_batches_equal(bc, br)
    assert list(c.rejected_frames) == list(r.rejected_frames)
    assert c.unknown_codes == r.unknown_codes
    # every input byte is accounted for exactly once: in an accepted frame or a reject
    if len(buf) < P.MAX_FRAME_SIZE:
        assert len(bc.raw) + sum(len(x) for _, _, x in c.rejected_frames) == len(buf)
    assert len(c.rejected_frames) == bc.rejects.sum()
    return bc


# ------------------------------------------------------------------------------ CRC
def test_crc32c_check_value():
    assert codec.crc32c(b"123456789") == 0xE3069283
    assert ref.crc32c(b"123456789") == 0xE3069283
    assert codec.crc32c(b"") == 0


@given(st.binary(max_size=2000), st.integers(0, 2000))
def test_crc32c_paths_agree_and_chain(data, cut):
    whole = codec.crc32c(data)
    assert whole == _crc32c_portable(data) == ref.crc32c(data)
    cut = min(cut, len(data))
    assert codec.crc32c(data[cut:], codec.crc32c(data[:cut])) == whole


# ------------------------------------------------------------------------------ round trips
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(waveform_args())
def test_waveform_round_trip(args):
    frame = codec.encode_waveform(**args)
    assert frame == ref.encode_waveform(**args)
    b = decode_both(frame)
    assert b.n_frames == 1 and not b.rejected()
    w = b["waveforms"]
    for key in ("frame_type", "device_id", "seq", "ts_us", "channel", "fs_hz"):
        assert w[key][0] == args[key]
    assert w["gain"][0] == np.float32(args["gain"]) and w["offset"][0] == np.float32(args["offset"])
    assert np.array_equal(b.waveform_samples(0), args["samples"])
    assert b.frame_bytes(0) == frame


@settings(max_examples=100)
@given(numerics_args())
def test_numerics_round_trip(args):
    frame = codec.encode_numerics(**args)
    assert frame == ref.encode_numerics(**args)
    b = decode_both(frame)
    n = b["numerics"]
    assert list(n["code"]) == [c for c, _, _ in args["entries"]]
    assert list(n["status"]) == [s for _, _, s in args["entries"]]
    for (_, value, status), got in zip(args["entries"], n["value"], strict=True):
        assert math.isnan(got) if status == 2 else got == np.float32(value)


@settings(max_examples=100)
@given(status_args())
def test_status_round_trip(args):
    a = dict(args)
    head = (a.pop("device_id"), a.pop("seq"), a.pop("ts_us"))
    frame = codec.encode_status(*head, **a)
    assert frame == ref.encode_status(*head, **a)
    b = decode_both(frame)
    s = b["status"]
    for key in ("battery", "flags", "carrier", "rssi", "leads_off", "fault", "powered_s"):
        assert s[key][0] == args[key], key
    acc = b["accessories"]
    assert s["n_accessories"][0] == len(args["accessories"]) == len(acc["kind"])
    for (kind, serial, hours), k, sr, h in zip(
        args["accessories"], acc["kind"], acc["serial"], acc["powered_s"], strict=True
    ):
        assert (k, sr.decode(), h) == (kind, serial, hours)


def test_ack_and_command_round_trip():
    frames = codec.encode_ack(5, 1, TS, 77, 1, 1, 9) + codec.encode_command(5, 2, TS, 78, 3, 900)
    b = decode_both(frames)
    assert b["acks"]["command_id"][0] == 77 and b["acks"]["detail"][0] == 9
    assert b["commands"]["command_id"][0] == 78 and b["commands"]["arg"][0] == 900


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_frame(), min_size=1, max_size=12))
def test_many_frames_one_buffer_and_split_feeds(frames):
    whole = decode_both(b"".join(frames))
    assert whole.n_frames == len(frames) and not whole.rejected()
    dec = codec.FrameDecoder()
    for f in frames:  # one feed per message, one take: the same batch
        dec.feed(f)
    assert_batches_equal(dec.take(), whole)


# ------------------------------------------------------------------------------ hostile input
@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data):
    b = decode_both(data)
    assert b.n_frames == 0  # a random frame would need to guess its CRC-32C


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_frame(), min_size=3, max_size=8), st.data())
def test_corrupting_one_frame_loses_no_other(frames, data):
    """A bit flip, truncation or garbage inside frame k rejects k only."""
    k = data.draw(st.integers(0, len(frames) - 1))
    bad = bytearray(frames[k])
    how = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if how == "flip":
        bit = data.draw(st.integers(0, len(bad) * 8 - 1))
        bad[bit // 8] ^= 1 << (bit % 8)
    elif how == "truncate":
        bad = bad[: data.draw(st.integers(1, len(bad) - 1))]
    else:
        at = data.draw(st.integers(1, len(bad) - 1))
        bad[at:at] = data.draw(st.binary(min_size=1, max_size=40))
    buf = b"".join(frames[:k]) + bytes(bad) + b"".join(frames[k + 1 :])
    b = decode_both(buf)
    got = [b.frame_bytes(i) for i in range(b.n_frames)]
    assert got == frames[:k] + frames[k + 1 :]
    assert b.rejects.sum() >= 1


@settings(max_examples=100)
@given(st.lists(any_frame(), min_size=1, max_size=5), st.binary(min_size=1, max_size=64))
def test_garbage_between_frames(frames, junk):
    junk = junk.replace(b"V", b"v")  # junk without a magic start
    b = decode_both(junk + junk.join(frames) + junk)
    assert b.n_frames == len(frames)
    assert b.rejected() == {"bad_magic": len(frames) + 1}


def frame_with(payload: bytes, ftype: int = 0x01, minor: int = 0, major: int = 1,
               device_id: int = 42, ts_us: int = TS) -> bytes:
    head = struct.pack("<2sBBBBHQIq", b"VC", major, minor, ftype, 0, len(payload), device_id, 1, ts_us)
    return head + payload + struct.pack("<I", ref.crc32c(head + payload))


WAVE_OK = struct.pack("<BBHHHff", 1, 0, 250, 2, 0, 2.5, 0.0) + struct.pack("<2h", 5, -5)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (frame_with(WAVE_OK, major=2), R.BAD_VERSION),
        (frame_with(WAVE_OK, ftype=0x77), R.UNKNOWN_TYPE),
        (frame_with(WAVE_OK, device_id=0), R.VALUE_RANGE),
        (frame_with(WAVE_OK, ts_us=0), R.VALUE_RANGE),
        (frame_with(WAVE_OK + b"\0"), R.LENGTH),  # trailing byte in a v1.0 frame
        (frame_with(WAVE_OK[:-1]), R.LENGTH),
        (frame_with(WAVE_OK[:10]), R.LENGTH),
        (frame_with(struct.pack("<BBHHHff", 12, 0, 250, 1, 0, 1.0, 0.0) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 2, 250, 1, 0, 1.0, 0.0) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 0, 0, 1, 0, 1.0, 0.0) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 0, 250, 1, 0, 0.0, 0.0) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 0, 250, 1, 0, math.nan, 0.0) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 0, 250, 1, 0, 1.0, math.inf) + b"\0\0"), R.VALUE_RANGE),
        (frame_with(struct.pack("<BBHHHff", 1, 1, 250, 3, 0, 1.0, 0.0) + b"\0\0\x01"), R.LENGTH),
        (frame_with(struct.pack("<B3xBBHf", 1, 1, 0, 0, 400.0), 0x10), R.VALUE_RANGE),  # HR 400
        (frame_with(struct.pack("<B3xBBHf", 1, 3, 0, 0, math.nan), 0x10), R.VALUE_RANGE),
        (frame_with(struct.pack("<B3xBBHf", 1, 3, 3, 0, 90.0), 0x10), R.VALUE_RANGE),  # status 3
        (frame_with(struct.pack("<B3x", 0), 0x10), R.VALUE_RANGE),  # no entries
        (frame_with(struct.pack("<BBBbHHIB3x", 101, 0, 0, 0, 0, 0, 0, 0), 0x20), R.VALUE_RANGE),
        (
            frame_with(struct.pack("<BBBbHHIB3x", 50, 0, 0, 0, 0, 0, 0, 1)
                       + struct.pack("<B3x16sI", 1, b"AB\x01", 5), 0x20),
            R.VALUE_RANGE,  # control character in a serial
        ),
        (frame_with(struct.pack("<IBBH", 1, 1, 9, 0), 0x30), R.VALUE_RANGE),
        (frame_with(struct.pack("<IBBH", 1, 1, 1, 0)[:7], 0x30), R.LENGTH),
    ],
)
def test_specific_reject_reasons(frame, reason):
    good = codec.encode_numerics(9, 1, TS, [(1, 60.0)])
    b = decode_both(good + frame + good)
    assert b.rejected() == {reason.name.lower(): 1}
    assert b.n_frames == 2


def test_newer_minor_version_extra_bytes_are_ignored():
    wave = frame_with(WAVE_OK + b"future", minor=3)
    nums = frame_with(struct.pack("<B3xBBHf", 2, 1, 0, 0, 61.0) + struct.pack("<BBHf", 200, 0, 0, 1.0) + b"x", 0x10, minor=1)
    b = decode_both(wave + nums)
    assert b.n_frames == 2 and not b.rejected()
    assert list(b.waveform_samples(0)) == [5, -5]
    assert list(b["numerics"]["code"]) == [1]  # unknown code 200 skipped, counted


def test_unknown_numeric_code_is_skipped_and_counted(decoder):
    decoder.feed(frame_with(struct.pack("<B3xBBHfBBHf", 2, 250, 0, 0, 1.0, 2, 0, 0, 70.0), 0x10))
    b = decoder.take()
    assert list(b["numerics"]["code"]) == [2] and decoder.unknown_codes == 1


def test_device_mismatch(decoder):
    frames = codec.encode_numerics(7, 1, TS, [(1, 60.0)]) + codec.encode_numerics(8, 1, TS, [(1, 60.0)])
    decoder.feed(frames, device_id=7)
    b = decoder.take()
    assert list(b["frames"]["device_id"]) == [7] and b.rejected() == {"device_mismatch": 1}
    assert decoder.rejected_frames[-1][:2] == (R.DEVICE_MISMATCH, 8)


def test_truncated_tail_and_lone_magic_byte(decoder):
    f = codec.encode_numerics(7, 1, TS, [(1, 60.0)])
    for tail, reason in ((f[:20], "truncated"), (f[:-1], "truncated"), (b"V", "truncated"), (b"x", "bad_magic")):
        decoder.feed(f + tail)
        b = decoder.take()
        assert b.n_frames == 1 and b.rejected() == {reason: 1}, tail


def test_rejected_ring_is_bounded_and_counts_stay_exact():
    dec = codec.FrameDecoder(keep_rejects=3)
    bad = frame_with(WAVE_OK, ftype=0x77)
    dec.feed(bad * 10)
    assert len(dec.rejected_frames) == 3
    assert dec.reject_counts[R.UNKNOWN_TYPE] == 10
    assert dec.rejected_frames[0] == (R.UNKNOWN_TYPE, 42, bad)


def test_take_hands_over_arrays(decoder):
    f = codec.encode_waveform(1, 3, 0, TS, 1, np.arange(100, dtype=np.int16), 250, 1.0)
    decoder.feed(f)
    first = decoder.take()
    kept = first.samples.copy()
    decoder.feed(codec.encode_waveform(1, 3, 1, TS, 1, -np.arange(100, dtype=np.int16), 250, 1.0))
    second = decoder.take()
    assert np.array_equal(first.samples, kept) and second.samples[1] == -1
    assert decoder.take().n_frames == 0


def test_accepts_any_byte_buffer(decoder):
    f = codec.encode_numerics(7, 1, TS, [(1, 60.0)]) * 3
    for buf in (f, bytearray(f), memoryview(f), np.frombuffer(f, np.uint8)):
        assert decoder.feed(buf) == 3
    assert decoder.take().n_frames == 12


def test_large_buffer_grows_internal_arrays(decoder):
    rng = np.random.default_rng(1)
    frames = [
        codec.encode_waveform(1, 1 + i % 50, i, TS + i, 1, rng.integers(-2000, 2000, 500), 500, 1.0)
        for i in range(400)
    ]
    b = decoder.decode(b"".join(frames))
    assert b.n_frames == 400 and len(b.samples) == 200_000
    assert [b.frame_bytes(i) for i in (0, 199, 399)] == [frames[0], frames[199], frames[399]]


def test_next_batch_is_sized_from_the_last_one():
    """A steady load allocates each batch's arrays once (the last batch's size plus a
    quarter), not doubled from the minimum with a copy at each doubling."""
    rng = np.random.default_rng(2)
    parts = [codec.encode_waveform(1, 1 + i % 50, i, TS + i, 1, rng.integers(-2000, 2000, 500),
                                   500, 1.0) for i in range(400)]
    frames = b"".join(parts)
    dec = codec.FrameDecoder()
    first = dec.decode(frames)  # 200,000 samples: doubled from 65,536 (to 262,144)
    second = dec.decode(frames)
    assert first.samples.base.shape[0] == 262_144
    assert second.samples.base.shape[0] == 250_000 and second.raw.base.shape[0] == \
        max(262_144, len(frames) * 5 // 4)
    assert np.array_equal(first.samples, second.samples)
    assert dec.decode(parts[0]).n_frames == 1  # one frame: sized from the last batch
    assert dec.decode(parts[0]).samples.base.shape[0] == 65_536  # then from that one


@pytest.mark.parametrize("enc", list(ENCODERS))
def test_encoders_refuse_impossible_arguments(enc):
    e = ENCODERS[enc]
    x = np.zeros(10, np.int16)
    bad_calls = [
        lambda: e.encode_waveform(1, 0, 0, TS, 1, x, 250, 1.0),  # device id 0
        lambda: e.encode_waveform(1, 1, 2**32, TS, 1, x, 250, 1.0),
        lambda: e.encode_waveform(1, 1, 0, 0, 1, x, 250, 1.0),
        lambda: e.encode_waveform(2, 1, 0, TS, 2, x, 250, 1.0),  # pleth channel 2
        lambda: e.encode_waveform(0x10, 1, 0, TS, 0, x, 250, 1.0),
        lambda: e.encode_waveform(1, 1, 0, TS, 1, x, 0, 1.0),
        lambda: e.encode_waveform(1, 1, 0, TS, 1, x, 250, 0.0),
        lambda: e.encode_waveform(1, 1, 0, TS, 1, np.array([40000]), 250, 1.0),
        lambda: e.encode_waveform(1, 1, 0, TS, 1, np.zeros(P.MAX_SAMPLES + 1), 250, 1.0),
        lambda: e.encode_waveform(1, 1, 0, TS, 1, [], 250, 1.0),
        lambda: e.encode_numerics(1, 0, TS, []),
        lambda: e.encode_numerics(1, 0, TS, [(3, 101.0)]),
        lambda: e.encode_status(1, 0, TS, battery=101),
        lambda: e.encode_status(1, 0, TS, accessories=[(1, "", 0)]),
        lambda: e.encode_status(1, 0, TS, accessories=[(1, "x" * 17, 0)]),
        lambda: e.encode_status(1, 0, TS, rssi=200),
        lambda: e.encode_ack(1, 0, TS, 1, 1, 9),
        lambda: e.encode_command(1, 0, TS, -1, 1),
    ]
    for call in bad_calls:
        with pytest.raises(UsageError):
            call()


def test_delta8_is_compact_on_ecg_like_signal():
    t = np.arange(250) / 250
    ecg = (400 * np.exp(-(((t % 0.8) - 0.3) ** 2) / 0.0004) + 30 * np.sin(2 * np.pi * t)).astype(np.int16)
    raw = codec.encode_waveform(1, 1, 0, TS, 1, ecg, 250, 2.5, encoding=0)
    delta = codec.encode_waveform(1, 1, 0, TS, 1, ecg, 250, 2.5, encoding=1)
    assert len(delta) < 0.65 * len(raw)
    assert np.array_equal(codec.FrameDecoder().decode(delta).samples, ecg)


def test_random_large_buffers_agree():
    rng = np.random.default_rng(7)
    parts = []
    for i in range(200):
        parts.append(codec.encode_waveform(1, 5, i, TS, 1, rng.integers(-300, 300, 64), 250, 1.0))
        if i % 17 == 0:
            parts.append(os.urandom(int(rng.integers(1, 50))))
    decode_both(b"".join(parts))


@settings(max_examples=300)
@given(st.integers(1, 300), st.binary(min_size=0, max_size=700), st.integers(0, 1))
def test_arbitrary_delta8_bytes_with_valid_crc(n, body, minor):
    """Crafted DELTA8 data (escapes anywhere, int16 wrap-around, short or long data)
    decodes identically in both decoders or is rejected as LENGTH by both."""
    payload = struct.pack("<BBHHHff", 1, 1, 250, n, 0, 1.0, 0.0) + body
    b = decode_both(frame_with(payload, minor=minor))
    assert b.n_frames + b.rejects[R.LENGTH] == 1
