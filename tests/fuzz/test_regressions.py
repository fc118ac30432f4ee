"""Inputs that once broke a fuzz invariant, replayed through the same oracle.

Every file under ``tests/fuzz/regressions/<target>/`` is a harness input (control
prefix included, see ``fuzz/fuzzlib.py``) and must pass ``fuzz/<target>_invariants``'s
``check``. Each fixed bug also has a direct test below that states the behaviour in
terms of the public API. Inputs whose bug is not fixed yet are listed in ``OPEN`` and
run as strict xfails, so the test starts failing (and must be moved out of ``OPEN``)
when the owner fixes the bug.
"""

from __future__ import annotations

from pathlib import Path

import frame_invariants
import json_invariants
import mqtt_invariants
import msgspec
import pytest

from vitalcore import _refcodec as ref
from vitalcore import codec
from vitalcore._ext import mqttcodec as mqtt_ext
from vitalcore.errors import UsageError
from vitalcore.jsonframes import JsonFrameDecoder, parse
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import _refcodec as mqtt_ref
from vitalcore.testing import TS

HERE = Path(__file__).resolve().parent / "regressions"
CHECKS = {"frames": frame_invariants.check, "mqtt": mqtt_invariants.check,
          "json": json_invariants.check}
#: file -> why it still fails (a bug in code this test suite does not own)
OPEN: dict[str, str] = {}
CASES = sorted(f"{d.name}/{f.name}" for d in HERE.iterdir() if d.is_dir() for f in d.iterdir())


def test_there_are_regression_inputs():
    assert CASES and all(c.split("/")[0] in CHECKS for c in CASES)


@pytest.mark.parametrize("case", CASES)
def test_replay(case, request):
    if case in OPEN:
        request.applymarker(pytest.mark.xfail(reason=OPEN[case], strict=True))
    target = case.split("/")[0]
    CHECKS[target]((HERE / case).read_bytes())


# ------------------------------------------------------------------------------ fixed
def test_json_with_ill_formed_utf8_in_a_string_is_bad_json_not_an_exception():
    """msgspec raises UnicodeDecodeError (not DecodeError) for bad UTF-8 in a string value;
    the decoder let it escape from ``feed``. Found by fuzz_json in its first minute."""
    doc = b'{"type": "p\x94", "device": 4660, "seq": 7, "ts_us": 1764115200000000}'
    with pytest.raises(msgspec.DecodeError):
        parse(doc)
    d = JsonFrameDecoder()
    assert d.feed(doc) == 0
    assert d.take().rejected() == {"bad_json": 1}
    assert "UTF-8" in d.last_error


@pytest.mark.parametrize("enc", [codec, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("value", [1e300, -3.4028235677973366e38, 1e39])
def test_numeric_value_beyond_float32_is_refused_by_both_encoders(enc, value):
    """The reference encoder raised OverflowError (struct.pack) where the Cython one wrote
    an infinity, for an UNAVAILABLE entry or an unknown code (no range check applies).
    Found by the JSON property test (twin encoders behind the JSON form)."""
    for entry in [(3, value, 2), (200, value, 0)]:
        with pytest.raises(UsageError, match="float32"):
            enc.encode_numerics(1, 0, TS, [entry])
    largest = 3.4028234663852886e38  # FLT_MAX itself still encodes, identically
    assert enc.encode_numerics(1, 0, TS, [(200, largest, 0)]) == ref.encode_numerics(
        1, 0, TS, [(200, largest, 0)])


def test_json_unavailable_value_beyond_float32_is_a_value_range_reject():
    d = JsonFrameDecoder()
    doc = (HERE / "json" / "unavailable-value-beyond-float32").read_bytes()[2:]
    assert d.feed(doc) == 0
    assert d.take().rejected() == {"value_range": 1}


@pytest.mark.parametrize("enc", [codec, ref], ids=["cython", "reference"])
def test_non_ascii_accessory_serial_is_a_usage_error(enc):
    """``serial.encode("ascii")`` raised UnicodeEncodeError out of both encoders and out of
    ``JsonFrameDecoder.feed`` (an accessory serial "BAT-é" from a JSON device). Found by
    the native fuzz_json campaign after 1.3 M executions."""
    with pytest.raises(UsageError, match="printable ASCII"):
        enc.encode_status(1, 0, TS, accessories=[(2, "BAT-\u00e9", 0)])
    d = JsonFrameDecoder()
    doc = (b'{"type": "status", "device": 4660, "seq": 3, "ts_us": 1764115200000000, '
           b'"accessories": [{"kind": "battery", "serial": "BAT-\xc3\xa9"}]}')
    assert d.feed(doc) == 0
    assert d.take().rejected() == {"value_range": 1}


# ------------------------------------------------------------------------------ open
def test_mqtt_pending_bytes_after_failure():
    """Both parsers hold nothing once failed (the reference used to report the bytes)."""
    pending = []
    for codec_ in (mqtt_ext, mqtt_ref):
        parser = codec_.MqttParser(role="server", protocol_level=5)
        with pytest.raises(MqttProtocolError):
            parser.feed(b"\xc9")  # PINGREQ with reserved flags: malformed, 0x81
        pending.append(parser.pending_bytes)
    assert pending[0] == pending[1]
