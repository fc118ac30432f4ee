"""Property tests of the fuzz invariants, on structured hostile input (hypothesis).

The fuzz harnesses check their invariants on whatever libFuzzer makes; these tests
drive the same oracles (``fuzz/*_invariants.py``) with inputs hypothesis builds from
valid traffic, so that every CI run reaches the deep rules (payload validation behind a
good CRC, every MQTT packet type, every JSON frame type) and checks what
``tests/test_codec.py``, ``tests/mqtt`` and ``tests/test_jsonframes.py`` do not:
re-encoding of decoded frames and packets, in-order byte accounting across fragmented
feeds, the bound on bytes a parser holds, and the twin encoders behind the JSON form.
"""

from __future__ import annotations

import struct

import frame_invariants
import json_invariants
import mqtt_invariants
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import _refcodec as ref
from vitalcore import codec
from vitalcore.jsonframes import from_binary
from vitalcore.mqtt import _refcodec as mqtt_ref
from vitalcore.mqtt import packets as M
from vitalcore.testing import TS, any_frame

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutate(data: bytearray, draw, n: int) -> bytearray:
    for _ in range(n):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i]
        else:
            data.insert(i, draw(st.integers(0, 255)))
    return data


# ------------------------------------------------------------------------------ frames
@settings(max_examples=120, **SLOW)
@given(st.lists(any_frame(), min_size=1, max_size=5), st.integers(0, 255),
       st.integers(0, 255), st.data())
def test_frames_with_payload_mutations_behind_a_repaired_crc(frames, flags, seed, data):
    """Flag bit 0 repairs CRCs, so the mutations reach the payload rules of §4-8."""
    buf = _mutate(bytearray(b"".join(frames)), data.draw, data.draw(st.integers(0, 4)))
    frame_invariants.check(bytes([flags | 1, seed]) + bytes(buf))


@settings(max_examples=40, **SLOW)
@given(st.lists(any_frame(), min_size=1, max_size=4), st.integers(0, 255), st.data())
def test_frames_fed_in_fragments_with_a_take_per_feed(frames, seed, data):
    """Frames cut by fragment boundaries are truncation rejects; nothing else is lost."""
    buf = b"".join(frames)
    frame_invariants.check(bytes([4 | data.draw(st.sampled_from([0, 2])), seed]) + buf)


def test_repair_crcs_makes_frames_valid_and_leaves_junk_alone():
    f = codec.encode_ack(5, 1, TS, 77, 1, 1)
    broken = b"xx" + f[:-4] + b"\0\0\0\0" + b"VC"
    fixed = frame_invariants.repair_crcs(broken)
    assert fixed == b"xx" + f + b"VC"
    assert codec.FrameDecoder().decode(fixed).n_frames == 1


def test_canonical_frames_must_reencode_to_their_bytes():
    """The oracle is not vacuous: a non-canonical escape in DELTA8 is seen as such."""
    frame = codec.encode_waveform(1, 5, 1, TS, 1, [0, 1000, 1001], 250, 1.0)
    batch = codec.FrameDecoder().decode(frame)
    assert frame_invariants._canonical(frame, batch, 0)
    pl = bytearray(frame[28:-4])
    pl[-1:] = b"\x80" + struct.pack("<h", 1001)  # +1 written as an escape: same samples
    head = bytearray(frame[:28])
    head[6:8] = struct.pack("<H", len(pl))
    odd = bytes(head + pl)
    odd += struct.pack("<I", ref.crc32c(odd))
    batch = codec.FrameDecoder().decode(odd)
    assert batch.n_frames == 1 and not frame_invariants._canonical(odd, batch, 0)
    frame_invariants.check(b"\0\0" + odd)  # accepted, same content, different bytes: fine


# ------------------------------------------------------------------------------ MQTT
def _stream(level: int, to_server: bool) -> bytes:
    v5 = level == 5
    props = M.Properties(user_properties=[("a", "b")], topic_alias=2) if v5 else None
    server_bound = [
        M.Publish("vc/v1/dev/1/up", b"\x00\x01", 1, False, False, 3, props),
        M.Subscribe(4, [M.Subscription("vc/+/#", 2)]), M.Unsubscribe(5, ["vc/+/#"]),
        M.PubRel(3), M.PingReq(), M.Disconnect(),
    ]
    client_bound = [
        M.ConnAck(True, 0), M.Publish("t", b"", 2, True, True, 9, props),
        M.SubAck(4, [2, 0x80]), M.UnsubAck(5, [0] if v5 else []), M.PubComp(9), M.PingResp(),
    ]
    return b"".join(mqtt_ref.encode(p, level) for p in (server_bound if to_server
                                                           else client_bound))


@settings(max_examples=150, **SLOW)
@given(st.sampled_from([1, 2, 3, 4]), st.integers(0, 7), st.integers(0, 255), st.data())
def test_mqtt_mutated_streams_round_trip_and_stay_bounded(setup, max_index, seed, data):
    level = 4 if setup in (1, 3) else 5
    buf = _mutate(bytearray(_stream(level, setup in (1, 2))), data.draw,
                  data.draw(st.integers(0, 3)))
    mqtt_invariants.check(bytes([setup | max_index << 3, seed]) + bytes(buf))


@settings(max_examples=60, **SLOW)
@given(st.booleans(), st.integers(0, 255), st.binary(max_size=200))
def test_mqtt_connect_then_random_bytes(v5, seed, tail):
    mqtt_invariants.check(bytes([0x40 | (0x80 if v5 else 0), seed]) + tail)


# ------------------------------------------------------------------------------ JSON
@settings(max_examples=80, **SLOW)
@given(st.lists(any_frame(), min_size=1, max_size=3), st.booleans(), st.data())
def test_json_documents_with_mutated_values(frames, bind, data):
    """Valid JSON documents with values replaced by hostile ones (range, type, size)."""
    objs = [msgspec.json.decode(from_binary(f)) for f in frames]
    hostile = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.none(),
                        st.text(max_size=5), st.just(1e300), st.just(-1e39))
    for obj in objs:
        for key in data.draw(st.lists(st.sampled_from(sorted(obj)), max_size=2)):
            obj[key] = data.draw(hostile)
        if isinstance(obj.get("values"), list) and obj["values"]:
            obj["values"][0]["value"] = data.draw(hostile)
            obj["values"][0]["status"] = data.draw(st.sampled_from(["valid", "unavailable"]))
    doc = msgspec.json.encode(objs if len(objs) > 1 else objs[0])
    json_invariants.check(bytes([int(bind), 0]) + doc)


@pytest.mark.parametrize("doc", [b"", b"[]", b"{}", b"[{}]", b"null", b"\xff", b"[" * 5000])
def test_json_degenerate_documents(doc):
    json_invariants.check(b"\0\0" + doc)


# ------------------------------------------------------------------------------ oracles
class _LossyDecoder(ref.RefFrameDecoder):
    """Keeps every reject one byte short (in both "implementations" alike)."""

    def _reject(self, reason, data, dev=0):
        super()._reject(reason, data[:-1] or data, dev)


class _MislabellingDecoder(ref.RefFrameDecoder):
    """Calls bad magic a checksum failure."""

    def _reject(self, reason, data, dev=0):
        super()._reject(ref.R.CHECKSUM if reason == ref.R.BAD_MAGIC else reason, data, dev)


def test_frame_oracle_can_fail(monkeypatch):
    """A loss both decoders share is caught by the byte accounting, a divergence by the
    comparison: the checks are not vacuous."""
    data = b"\0\0" + b"junk" + codec.encode_ack(5, 1, TS, 77, 1, 1)
    frame_invariants.check(data)
    with monkeypatch.context() as m:
        m.setattr(frame_invariants.codec, "FrameDecoder", _LossyDecoder)
        m.setattr(frame_invariants.ref, "RefFrameDecoder", _LossyDecoder)
        with pytest.raises(AssertionError, match="bytes accounted"):
            frame_invariants.check(data)
    monkeypatch.setattr(frame_invariants.ref, "RefFrameDecoder", _MislabellingDecoder)
    with pytest.raises(AssertionError, match="kept rejects differ"):
        frame_invariants.check(data)


def test_mqtt_oracle_can_fail(monkeypatch):
    data = bytes([3, 0]) + _stream(4, False)  # client parser, MQTT 3.1.1
    mqtt_invariants.check(data)
    monkeypatch.setattr(mqtt_invariants.ref, "encode", lambda packet, level: b"\xd0\x00")
    with pytest.raises(AssertionError, match="encoders differ"):
        mqtt_invariants.check(data)
