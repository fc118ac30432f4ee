"""The fast-mode checks (``fuzz/frame_fast.py``, ``fuzz/mqtt_fast.py``) pass on good
input and fail on bad: each invariant is shown to catch a doctored result.

The fast mode runs the Cython codecs alone (no reference twin) for multi-million
execution campaigns (docs/fuzzing.md); a check that could never fail would make those
campaigns worthless, so every family of invariant is broken on purpose here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import frame_fast
import mqtt_fast
import numpy as np
import pytest

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore._ext import mqttcodec as mqtt_ext
from vitalcore.mqtt import packets as M
from vitalcore.testing import TS

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
DEV = 0x1122334455667788


def _traffic() -> bytes:
    return b"".join([
        codec.encode_waveform(P.FrameType.ECG, DEV, 1, TS, 0, np.arange(-50, 50, dtype=np.int16),
                              250, 2.5, 0.0),
        b"junk",
        codec.encode_numerics(DEV, 2, TS, [(1, 72.0), (2, 97.0, 1), (1, float("nan"), 2)]),
        codec.encode_status(DEV, 3, TS, battery=80, accessories=[(1, "BAT-1", 10)]),
        codec.encode_ack(DEV, 4, TS, 9, 1, 0),
        codec.encode_command(DEV, 5, TS, 9, 1, 3),
        b"VC\x01",
    ])


def _batch() -> codec.DecodedBatch:
    return codec.FrameDecoder().decode(_traffic())


@pytest.mark.parametrize("target", ["frames", "mqtt"])
def test_fast_checks_pass_on_the_whole_corpus(target):
    check = {"frames": frame_fast.check, "mqtt": mqtt_fast.check}[target]
    files = sorted((CORPUS / target).iterdir())
    assert len(files) >= 5
    for f in files:
        check(f.read_bytes())


@pytest.mark.parametrize("flags", [0, 1, 3, 0x25, 0x2D, 0x35, 0x3D])
@pytest.mark.parametrize("seed", [0, 1, 6, 200])
def test_frame_fast_check_passes_on_valid_traffic_in_every_setup(flags, seed):
    frame_fast.check(bytes([flags, seed]) + _traffic())


def test_a_consistent_batch_passes():
    b = _batch()
    assert b.n_frames == 5 and len(b.tables["numerics"]["code"]) == 3
    frame_fast.check_batch(b, 5)
    frame_fast.check_batch(b, 5, device=DEV)


def _broken(change) -> codec.DecodedBatch:
    b = _batch()
    change(b)
    return b


@pytest.mark.parametrize("what, change", [
    ("row count", lambda b: None),  # checked against 4 frames below
    ("raw_offset", lambda b: b.tables["frames"]["raw_offset"].__setitem__(1, 3)),
    ("header seq", lambda b: b.raw.__setitem__(16, b.raw[16] ^ 1)),
    ("device column", lambda b: b.tables["status"]["device_id"].__setitem__(0, 5)),
    ("sample_start", lambda b: b.tables["waveforms"]["sample_start"].__setitem__(0, 1)),
    ("samples tiled", lambda b: setattr(b, "samples", b.samples[:-1])),
    ("numeric range", lambda b: b.tables["numerics"]["value"].__setitem__(0, 1e9)),
    ("NaN iff unavailable", lambda b: b.tables["numerics"]["status"].__setitem__(0, 2)),
    ("unknown code kept", lambda b: b.tables["numerics"]["code"].__setitem__(0, 250)),
    ("n_accessories", lambda b: b.tables["status"]["n_accessories"].__setitem__(0, 2)),
    ("frame type", lambda b: b.tables["frames"]["frame_type"].__setitem__(4, 0x77)),
    ("dtype", lambda b: b.tables["acks"].__setitem__("kind", b.tables["acks"]["kind"]
                                                     .astype(np.int64))),
    ("timestamp", lambda b: b.tables["frames"]["ts_us"].__setitem__(0, 5)),
])
def test_each_batch_invariant_catches_a_doctored_batch(what, change):
    n = 4 if what == "row count" else 5
    with pytest.raises(AssertionError):
        frame_fast.check_batch(_broken(change), n)


def test_a_bound_decoder_must_not_accept_another_device():
    with pytest.raises(AssertionError, match="another device"):
        frame_fast.check_batch(_batch(), 5, device=DEV + 1)


def test_tiling_catches_a_lost_or_reordered_reject():
    fed = _traffic()
    d = codec.FrameDecoder()
    d.feed(fed)
    b, rejects = d.take(), list(d.rejected_frames)
    assert [r for r, _, _ in rejects] == [P.RejectReason.BAD_MAGIC, P.RejectReason.TRUNCATED]
    frame_fast._check_tiling(b, fed, rejects)
    for bad in (rejects[:1], rejects[::-1]):
        with pytest.raises(AssertionError, match="tile"):
            frame_fast._check_tiling(b, fed, bad)


def test_reject_rules_of_section_9():
    good = codec.encode_ack(DEV, 4, TS, 9, 1, 0)
    frame_fast._check_rejects([(P.RejectReason.BAD_MAGIC, 0, b"junk"),
                               (P.RejectReason.VALUE_RANGE, DEV, good)], 0)
    for bad in [(P.RejectReason.BAD_MAGIC, 7, b"junk"),  # a resync reject has no device
                (P.RejectReason.CHECKSUM, 0, b"VC\x01\x00" + b"x" * 30 + b"VC"),  # hides a magic
                (P.RejectReason.VALUE_RANGE, DEV, good[:-1] + b"\0"),  # not CRC-valid
                (P.RejectReason.BAD_JSON, 0, b"{"),  # not a binary decoder's reason
                (P.RejectReason.TRUNCATED, 0, b"")]:
        with pytest.raises(AssertionError):
            frame_fast._check_rejects([bad], 0)
    with pytest.raises(AssertionError, match="device_mismatch"):  # only with a bound device
        frame_fast._check_rejects([(P.RejectReason.DEVICE_MISMATCH, DEV, good)], 0)


# ------------------------------------------------------------------------------ MQTT
def _stream(level: int = 5) -> bytes:
    return (mqtt_ext.encode(M.Connect(level, "dev", True, 30), level)
            + mqtt_ext.encode(M.Publish("a/b", b"x" * 200, 1, packet_id=7), level)
            + mqtt_ext.encode(M.PingReq(), level))


def test_walk_counts_whole_packets_by_their_fixed_headers():
    s = _stream()
    assert mqtt_fast._walk(s) == (3, len(s))
    assert mqtt_fast._walk(s[:-1]) == (2, len(s) - 2)  # PINGREQ's second byte missing
    publish_at = len(mqtt_ext.encode(M.Connect(5, "dev", True, 30), 5))
    assert mqtt_fast._walk(s[: publish_at + 2]) == (1, publish_at)  # 2-byte length, cut
    assert mqtt_fast._walk(b"") == (0, 0)


@pytest.mark.parametrize("seed", [0, 1, 3, 6, 77])
@pytest.mark.parametrize("flags", [0, 1, 2, 0x3A, 0x08, 0x10])
def test_mqtt_fast_check_passes_on_valid_and_broken_streams(flags, seed):
    mqtt_fast.check(bytes([flags, seed]) + _stream(5 if flags & 7 in (2, 4) else 4))
    mqtt_fast.check(bytes([flags, seed]) + _stream()[:-7] + b"\xff\xff\xff\xff\xff")


class _Lossy:
    """A parser that loses the last packet of every feed that returns two or more."""

    def __init__(self, *args, **kwargs):
        self._p = mqtt_ext.MqttParser(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._p, name)

    def feed(self, data):
        out = self._p.feed(data)
        return out[:-1] if len(out) > 1 else out


class _Hoarder(_Lossy):
    """A parser that reports one pending byte too many."""

    def feed(self, data):
        return self._p.feed(data)

    @property
    def pending_bytes(self):
        return self._p.pending_bytes + 1


class _Wild(_Lossy):
    """A parser that lets a ValueError out on a PINGREQ."""

    def feed(self, data):
        if b"\xc0\x00" in data:
            raise ValueError("boom")
        return self._p.feed(data)


@pytest.mark.parametrize("parser, error", [(_Lossy, AssertionError),
                                           (_Hoarder, AssertionError),
                                           (_Wild, ValueError)])
def test_mqtt_fast_check_catches_a_misbehaving_parser(monkeypatch, parser, error):
    fake = SimpleNamespace(MqttParser=parser, encode=mqtt_ext.encode)
    monkeypatch.setattr(mqtt_fast, "ext", fake)
    with pytest.raises(error):
        mqtt_fast.check(bytes([0, 0]) + _stream())  # server before CONNECT, one chunk


def test_mqtt_fast_check_catches_split_dependence(monkeypatch):
    """A parser whose result depends on where the bytes are cut (it loses nothing: it
    returns the packets of a long feed in reverse order)."""

    class Split(_Lossy):
        def feed(self, data):
            out = self._p.feed(data)
            return out[::-1] if len(data) > 100 else out

    monkeypatch.setattr(mqtt_fast, "ext", SimpleNamespace(MqttParser=Split,
                                                          encode=mqtt_ext.encode))
    with pytest.raises(AssertionError, match="two splits"):
        mqtt_fast.check(bytes([0, 0]) + _stream() + bytes.fromhex("c000" * 20))


def test_rejected_reason_codes_are_the_documented_ones():
    assert mqtt_fast.REASONS == {0x81, 0x82, 0x84, 0x8F, 0x90, 0x95}
