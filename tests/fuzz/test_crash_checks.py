"""The crash-mode checks (``fuzz/frame_crash.py``, ``fuzz/mqtt_crash.py``) pass on good and
hostile input and report what they exist for: an exception the API does not document,
raised inside the codec call, and a broken counter or error contract.

The crash mode runs the Cython codecs alone with almost no invariant, for the cheapest
executions (docs/fuzzing.md); what it does check is broken on purpose here, by wrapping
the codec so that it misbehaves in one way at a time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import frame_crash
import fuzzlib
import mqtt_crash
import numpy as np
import pytest

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore._ext import mqttcodec as mqtt_ext
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import packets as M
from vitalcore.testing import TS

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
DEV = 0x1122334455667788


@pytest.mark.parametrize("target", ["frames", "mqtt"])
def test_crash_checks_pass_on_the_whole_corpus(target):
    check = {"frames": frame_crash.check, "mqtt": mqtt_crash.check}[target]
    files = sorted((CORPUS / target).iterdir())
    assert len(files) >= 5
    for f in files:
        check(f.read_bytes())


# ---------------------------------------------------------------------------- frames
def _traffic() -> bytes:
    return b"".join([
        codec.encode_waveform(P.FrameType.ECG, DEV, 1, TS, 0, np.arange(-50, 50, dtype=np.int16),
                              250, 2.5, 0.0),
        b"junk",
        codec.encode_numerics(DEV, 2, TS, [(1, 72.0), (2, 97.0, 1)]),
        codec.encode_ack(DEV, 4, TS, 9, 1, 0),
        b"VC\x01",
    ])


@pytest.mark.parametrize("flags", [0, 1, 3, 0x25, 0x2D, 0x3F])
@pytest.mark.parametrize("seed", [0, 1, 6, 200])
def test_frame_crash_check_passes_on_traffic_and_junk_in_every_setup(flags, seed):
    frame_crash.check(bytes([flags, seed]) + _traffic())
    frame_crash.check(bytes([flags, seed]) + bytes(range(256)) * 3)


class _Decoder:
    """A FrameDecoder that behaves; subclasses break one thing."""

    def __init__(self, **kwargs):
        self._d = codec.FrameDecoder(**kwargs)

    def __getattr__(self, name):
        return getattr(self._d, name)

    def feed(self, data, device_id=0):
        return self._d.feed(data, device_id)

    def take(self):
        return self._d.take()


class _RaisesInFeed(_Decoder):
    """``feed`` lets a ValueError out on bytes it does not like (here: 'junk')."""

    def feed(self, data, device_id=0):
        if b"junk" in bytes(data):
            raise ValueError("boom")
        return super().feed(data, device_id)


class _RaisesInTake(_Decoder):
    def take(self):
        raise IndexError("boom")


class _MiscountsFeed(_Decoder):
    """``feed`` returns one frame more than it accepted, when it accepted any."""

    def feed(self, data, device_id=0):
        n = super().feed(data, device_id)
        return n + 1 if n else n


class _LosesABatchReject(_Decoder):
    """``take`` returns a batch that lost one reject of its count."""

    def take(self):
        b = super().take()
        if b.rejects.sum():
            b.rejects[np.flatnonzero(b.rejects)[0]] -= 1
        return b


class _LosesABatchFrame(_Decoder):
    """``take`` reports one frame less than it holds (n_frames from a shorter table)."""

    def take(self):
        b = super().take()
        return SimpleNamespace(n_frames=max(b.n_frames - 1, 0), rejects=b.rejects)


def _with_decoder(monkeypatch, decoder) -> None:
    monkeypatch.setattr(frame_crash, "codec",
                        SimpleNamespace(FrameDecoder=decoder, crc32c=codec.crc32c))


def test_the_well_behaved_wrapper_passes(monkeypatch):
    _with_decoder(monkeypatch, _Decoder)
    for flags in (0, 0x25):
        frame_crash.check(bytes([flags, 3]) + _traffic())


@pytest.mark.parametrize("decoder, error", [(_RaisesInFeed, ValueError),
                                            (_RaisesInTake, IndexError)])
def test_an_undocumented_exception_from_the_frame_decoder_is_reported(monkeypatch, decoder,
                                                                      error):
    """The frame decoder documents no exception for peer data: whatever it raises leaves
    the check unchanged (libFuzzer reports it as a crash, with its traceback)."""
    _with_decoder(monkeypatch, decoder)
    with pytest.raises(error, match="boom"):
        frame_crash.check(bytes([0, 0]) + _traffic())


@pytest.mark.parametrize("decoder, what", [(_MiscountsFeed, "feed's count"),
                                           (_LosesABatchReject, "batch totals"),
                                           (_LosesABatchFrame, "batch totals")])
@pytest.mark.parametrize("flags", [0, 0x24])  # one take() at the end, or one per chunk
def test_each_frame_counter_check_catches_a_lying_decoder(monkeypatch, decoder, what, flags):
    _with_decoder(monkeypatch, decoder)
    with pytest.raises(AssertionError, match=what):
        frame_crash.check(bytes([flags, 2]) + _traffic())


# ------------------------------------------------------------------------------ MQTT
def _stream(level: int = 5) -> bytes:
    return (mqtt_ext.encode(M.Connect(level, "dev", True, 30), level)
            + mqtt_ext.encode(M.Publish("a/b", b"x" * 200, 1, packet_id=7), level)
            + mqtt_ext.encode(M.PingReq(), level))


BROKEN = _stream()[:-2] + b"\x00\x00"  # the reserved packet type 0 where PINGREQ was


@pytest.mark.parametrize("seed", [0, 1, 6, 77])
@pytest.mark.parametrize("flags", [0, 1, 2, 0x3A, 0x08, 0x10, 0xC0])
def test_mqtt_crash_check_passes_on_valid_and_broken_streams(flags, seed):
    mqtt_crash.check(bytes([flags, seed]) + _stream(5 if flags & 7 in (2, 4) else 4))
    mqtt_crash.check(bytes([flags, seed]) + BROKEN)


def test_the_documented_protocol_error_is_not_reported():
    """The broken stream really takes the error path (so the test above covers it)."""
    p = mqtt_ext.MqttParser()
    with pytest.raises(MqttProtocolError):
        p.feed(BROKEN)
    assert p.failed
    with pytest.raises(UsageError):
        p.feed(b"\xc0\x00")
    mqtt_crash.check(bytes([0, 0]) + BROKEN)


class _Parser:
    """An MqttParser that behaves; subclasses break one thing."""

    def __init__(self, *args, **kwargs):
        self._p = mqtt_ext.MqttParser(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._p, name)

    def feed(self, data):
        return self._p.feed(data)


class _Wild(_Parser):
    """``feed`` lets a KeyError out on a PINGREQ."""

    def feed(self, data):
        if b"\xc0\x00" in data:
            raise KeyError("boom")
        return super().feed(data)


class _UsageBeforeFailure(_Parser):
    """``feed`` raises UsageError (documented only for a failed parser) on a PINGREQ."""

    def feed(self, data):
        if b"\xc0\x00" in data:
            raise UsageError("boom")
        return super().feed(data)


class _Undead(_Parser):
    """A failed parser that accepts more input."""

    def feed(self, data):
        if self._p.failed:
            return []
        return super().feed(data)


class _FailsQuietly(_Parser):
    """Raises MqttProtocolError without setting ``failed``."""

    @property
    def failed(self):
        return False


@pytest.mark.parametrize("parser, data, error, match", [
    (_Wild, _stream(), KeyError, "boom"),
    (_UsageBeforeFailure, _stream(), UsageError, "boom"),
    (_Undead, BROKEN, AssertionError, "accepted more input"),
    (_FailsQuietly, BROKEN, AssertionError, "without the parser failing"),
])
def test_an_undocumented_exception_or_a_broken_error_contract_is_reported(
        monkeypatch, parser, data, error, match):
    monkeypatch.setattr(mqtt_crash, "ext", SimpleNamespace(MqttParser=parser))
    with pytest.raises(error, match=match):
        mqtt_crash.check(bytes([0, 0]) + data)  # server before CONNECT, one chunk


def test_the_well_behaved_parser_wrapper_passes(monkeypatch):
    monkeypatch.setattr(mqtt_crash, "ext", SimpleNamespace(MqttParser=_Parser))
    mqtt_crash.check(bytes([0, 0]) + _stream())
    mqtt_crash.check(bytes([0, 0]) + BROKEN)


# ------------------------------------------------------------------------- the switch
@pytest.mark.parametrize("argv, environ, mode", [
    ([], {}, "twin"),
    (["--crash"], {}, "crash"),
    (["--fast"], {}, "fast"),
    ([], {"VC_FUZZ_CRASH": "1"}, "crash"),
    ([], {"VC_FUZZ_FAST": "1"}, "fast"),
])
def test_harness_mode_reads_the_switch_and_hides_it_from_libfuzzer(monkeypatch, argv, environ,
                                                                   mode):
    for var in fuzzlib.MODES.values():
        monkeypatch.delenv(var, raising=False)
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["fuzz_x.py", *argv, "-runs=1"])
    assert fuzzlib.harness_mode() == mode
    assert sys.argv == ["fuzz_x.py", "-runs=1"]
    if mode != "twin":
        assert os.environ[fuzzlib.MODES[mode]] == "1"  # inherited by libFuzzer's children


def test_harness_mode_refuses_two_modes(monkeypatch):
    for var in fuzzlib.MODES.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "argv", ["fuzz_x.py", "--fast", "--crash"])
    with pytest.raises(SystemExit, match="one harness mode"):
        fuzzlib.harness_mode()
