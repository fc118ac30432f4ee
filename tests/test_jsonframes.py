"""JSON frames: same checks and same columns as binary frames."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import codec
from vitalcore.jsonframes import JsonFrameDecoder, from_binary, parse, to_binary
from vitalcore.testing import TS, any_frame


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(any_frame())
def test_binary_json_binary_round_trip(frame):
    """Every binary frame has a JSON form that stands for the same content."""
    doc = from_binary(frame)
    again = to_binary(parse(doc))
    assert from_binary(again) == doc
    if frame[4] in (0x20, 0x30, 0x40):  # waveforms may differ in sample encoding and
        assert again == frame  # numerics in the ignored value of UNAVAILABLE entries
    a, b = codec.FrameDecoder().decode(frame), codec.FrameDecoder().decode(again)
    assert np.array_equal(a.samples, b.samples)


def test_document_with_many_frames_and_one_bad_value():
    doc = json.dumps([
        {"type": "ecg", "device": 7, "seq": 1, "ts_us": TS, "lead": "II", "fs": 250, "gain": 2.5,
         "samples": [0, 10, -5]},
        {"type": "numerics", "device": 7, "seq": 1, "ts_us": TS,
         "values": [{"code": "hr", "value": 72}, {"code": "spo2", "value": 101}]},
        {"type": "numerics", "device": 7, "seq": 2, "ts_us": TS,
         "values": [{"code": "spo2", "value": 97}, {"code": "temp", "value": None}]},
    ])
    d = JsonFrameDecoder()
    assert d.feed(doc) == 2
    b = d.take()
    assert b.rejected() == {"value_range": 1}
    assert list(b.waveform_samples(0)) == [0, 10, -5]
    assert list(b["numerics"]["code"]) == [3, 8] and list(b["numerics"]["status"]) == [0, 2]
    assert "101" in d.last_error


def test_json_and_binary_share_a_decoder_and_its_counters():
    binary = codec.FrameDecoder()
    d = JsonFrameDecoder(binary)
    binary.feed(codec.encode_numerics(7, 1, TS, [(1, 60.0)]))
    ack = {"type": "ack", "device": 7, "seq": 1, "ts_us": TS, "command_id": 5,
           "kind": "start_nibp", "status": "completed"}
    d.feed(json.dumps(ack))
    b = d.take()
    assert b.n_frames == 2 and b["acks"]["status"][0] == 1


@settings(max_examples=200)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_garbage_documents_are_counted_not_raised(doc):
    d = JsonFrameDecoder()
    assert d.feed(doc) == 0
    assert d.take().rejected() in ({"bad_json": 1}, {"value_range": 1}, {})


def test_schema_violations_reject_the_document():
    d = JsonFrameDecoder()
    bad = [
        {"type": "ecg", "device": 0, "seq": 1, "ts_us": TS, "fs": 250, "samples": [1]},
        {"type": "ecg", "device": 1, "seq": 1, "ts_us": 5, "fs": 250, "samples": [1]},
        {"type": "ecg", "device": 1, "seq": 1, "ts_us": TS, "fs": 250, "samples": [40000]},
        {"type": "ecg", "device": 1, "seq": 1, "ts_us": TS, "fs": 250, "samples": []},
        {"type": "ecg", "device": 1, "seq": 1, "ts_us": TS, "fs": 250, "samples": [1], "x": 1},
        {"type": "teleport", "device": 1, "seq": 1, "ts_us": TS},
        {"type": "pleth", "device": 1, "seq": 1, "ts_us": TS, "fs": 100, "samples": [1], "channel": "green"},
    ]
    for doc in bad:
        assert d.feed(json.dumps(doc)) == 0, doc
    assert d.take().rejected() == {"bad_json": len(bad)}


def test_unknown_names_are_value_range_rejects_and_device_binding_applies():
    d = JsonFrameDecoder()
    doc = {"type": "ecg", "device": 1, "seq": 1, "ts_us": TS, "fs": 250, "samples": [1], "lead": "v9"}
    assert d.feed(json.dumps(doc)) == 0
    doc["lead"] = "v1"
    assert d.feed(json.dumps(doc), device_id=2) == 0
    assert d.feed(json.dumps(doc), device_id=1) == 1
    assert d.take().rejected() == {"value_range": 1, "device_mismatch": 1}
