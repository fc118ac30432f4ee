"""Round trips: encode -> feed -> the same packet, for every type, both versions.

Also: both implementations produce identical bytes, and any fragmentation of the
stream (byte at a time, random cuts) yields the same packets.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mqtt_helpers import (
    CODECS,
    connect_bytes,
    ext_codec,
    receiver,
    ref_codec,
    sample_packets,
)

from vitalcore.mqtt import packets as P

LEVELS = [P.MQTT_3_1_1, P.MQTT_5]


def _id(p):
    return type(p).__name__


@pytest.mark.parametrize("level", LEVELS)
def test_every_sample_round_trips(codec, level):
    samples = sample_packets(level)
    assert {type(p) for p in samples} >= {
        P.Connect, P.ConnAck, P.Publish, P.PubAck, P.PubRec, P.PubRel, P.PubComp,
        P.Subscribe, P.SubAck, P.Unsubscribe, P.UnsubAck, P.PingReq, P.PingResp,
        P.Disconnect,
    } | ({P.Auth} if level == 5 else set())
    for packet in samples:
        data = codec.encode(packet, level)
        parser = receiver(codec, packet, level)
        assert parser.feed(data) == [packet], packet
        assert parser.pending_bytes == 0


@pytest.mark.parametrize("level", LEVELS)
def test_both_codecs_encode_identical_bytes(level):
    for packet in sample_packets(level):
        assert ext_codec.encode(packet, level) == ref_codec.encode(packet, level), packet


def test_all_property_wire_types_are_covered():
    """The samples carry every property identifier of the spec table at least once."""
    seen = set()
    for packet in sample_packets(P.MQTT_5):
        for props in (getattr(packet, "properties", None),
                      getattr(getattr(packet, "will", None), "properties", None)):
            if props is not None:
                seen |= {pid for pid, (name, _, _) in P.PROPERTIES.items()
                         if getattr(props, name) is not None}
    assert seen == set(P.PROPERTIES)


@pytest.mark.parametrize("level", LEVELS)
def test_short_forms_of_acknowledgements(codec, level):
    """§3.4.2.1 / §3.14.2.1 / §3.15.2.1: reason code 0 without properties is omitted."""
    assert codec.encode_puback(5, protocol_level=level) == b"\x40\x02\x00\x05"
    assert codec.encode_pubrel(5, protocol_level=level) == b"\x62\x02\x00\x05"
    assert codec.encode(P.Disconnect(), level) == b"\xe0\x00"
    assert codec.encode(P.PingReq(), level) == b"\xc0\x00"
    assert codec.encode(P.PingResp(), level) == b"\xd0\x00"
    if level == 5:
        assert codec.encode_pubrec(5, 0x10, protocol_level=5) == b"\x50\x03\x00\x05\x10"
        assert codec.encode(P.Disconnect(0x8B), 5) == b"\xe0\x01\x8b"
        assert codec.encode(P.Auth(), 5) == b"\xf0\x00"
        # a reason code without properties still decodes
        p = codec.MqttParser(role="client", protocol_level=5)
        assert p.feed(b"\x40\x03\x00\x05\x10") == [P.PubAck(5, 0x10)]
        assert p.feed(b"\x40\x04\x00\x05\x10\x00") == [P.PubAck(5, 0x10)]


def test_publish_fast_path_matches_generic_encoder(codec):
    for level in LEVELS:
        for p in sample_packets(level):
            if isinstance(p, P.Publish):
                assert codec.encode_publish(
                    p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties,
                    protocol_level=level,
                ) == codec.encode(p, level)


def test_publish_payload_accepts_any_buffer(codec):
    want = codec.encode_publish("t", b"abc", protocol_level=4)
    assert codec.encode_publish("t", bytearray(b"abc"), protocol_level=4) == want
    assert codec.encode_publish("t", memoryview(b"xabcx")[1:4], protocol_level=4) == want


def test_large_remaining_lengths_use_multibyte_varint(codec):
    """§1.5.5: 127 -> 1 byte, 128 -> 2, 16384 -> 3, 2097152 -> 4."""
    for size, nbytes in ((127, 1), (128, 2), (16383, 2), (16384, 3), (2_097_152, 4)):
        payload = b"x" * (size - 3)  # topic "t" takes 3 bytes
        data = codec.encode_publish("t", payload, protocol_level=4)
        assert len(data) == 1 + nbytes + size
        p = codec.MqttParser(role="client", protocol_level=4)
        assert p.feed(data) == [P.Publish("t", payload)]


def _stream(level: int) -> tuple[bytes, list[P.Packet]]:
    """A server-bound stream: CONNECT then every client-to-server sample."""
    packets = [P.Connect(level, "dev-1", True, 30)]
    packets += [p for p in sample_packets(level)
                if p.packet_type in {3, 4, 5, 6, 7, 8, 10, 12, 14}
                or (p.packet_type == 15 and level == 5)]
    data = b"".join(ref_codec.encode(p, level) for p in packets)
    return data, packets


@pytest.mark.parametrize("level", LEVELS)
def test_byte_at_a_time(codec, level):
    data, want = _stream(level)
    parser = codec.MqttParser()
    got = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
    assert got == want
    assert parser.pending_bytes == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_fragments_give_the_same_packets(data):
    level = data.draw(st.sampled_from(LEVELS))
    stream, want = _stream(level)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    bounds = [0, *cuts, len(stream)]
    for codec in CODECS.values():
        parser = codec.MqttParser()
        got = []
        for a, b in zip(bounds, bounds[1:], strict=False):
            chunk = data.draw(st.sampled_from([bytes, bytearray, memoryview]))(stream[a:b])
            got += parser.feed(chunk)
            assert parser.pending_bytes <= b  # never more than what was fed
        assert got == want


def test_pending_bytes_counts_the_incomplete_packet(codec):
    parser = codec.MqttParser()
    c = connect_bytes(4)
    assert parser.feed(c[:1]) == [] and parser.pending_bytes == 1
    assert parser.feed(c[1:5]) == [] and parser.pending_bytes == 5
    assert len(parser.feed(c[5:] + b"\xc0")) == 1 and parser.pending_bytes == 1
    assert parser.feed(b"\x00") == [P.PingReq()] and parser.pending_bytes == 0


def test_many_packets_in_one_chunk(codec):
    data = connect_bytes(5) + b"".join(
        codec.encode_publish(f"vc/v1/dev/{i:08x}/up", bytes([i % 256]) * 300, 1,
                             packet_id=i + 1, protocol_level=5)
        for i in range(500)
    )
    got = codec.MqttParser().feed(data)
    assert len(got) == 501
    assert got[-1] == P.Publish("vc/v1/dev/000001f3/up", bytes([499 % 256]) * 300, 1,
                                packet_id=500)


def test_repeated_topic_is_decoded_once(codec):
    """Consecutive PUBLISHes on one topic share one str (the extension caches it)."""
    pub = codec.encode_publish("vc/v1/dev/000012ab/up", b"x", protocol_level=4)
    parser = codec.MqttParser()
    a, b, c = parser.feed(connect_bytes(4) + pub + pub)[1:] + [None]
    assert a.topic == b.topic == "vc/v1/dev/000012ab/up"
    if codec is ext_codec:
        assert a.topic is b.topic
