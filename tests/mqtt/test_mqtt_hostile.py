"""Hostile input: only MqttProtocolError, the same verdict from both implementations.

Random bytes, mutated valid streams, oversize lengths, bad varints, bad UTF-8, bad
flags. Whatever arrives, the parser either returns packets or raises
MqttProtocolError (never another exception, never a hang), and the Cython parser and
the reference twin agree on the packets and on the reason code.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import CODECS, agree, connect_bytes, ref_codec, sample_packets

from vitalcore.errors import PeerDataError, UsageError
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import packets as P

SETUPS = [("server", None), ("server", 4), ("server", 5), ("client", 4), ("client", 5)]


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SETUPS), st.binary(max_size=300))
def test_random_bytes(setup, data):
    role, level = setup
    agree([data], role, level)


@settings(max_examples=150, deadline=1000)
@given(st.sampled_from(SETUPS), st.binary(max_size=200), st.data())
def test_random_bytes_after_connect_in_fragments(setup, data, draw):
    role, level = setup
    if role == "server" and level is None:
        data = connect_bytes(draw.draw(st.sampled_from([4, 5]))) + data
    cuts = sorted(draw.draw(st.sets(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    agree([data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)], role, level)


def _valid_stream(level: int, role: str) -> bytes:
    server_bound = {3, 4, 5, 6, 7, 8, 10, 12, 14, 15}
    client_bound = {2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 15}
    wanted = server_bound if role == "server" else client_bound
    return b"".join(ref_codec.encode(p, level) for p in sample_packets(level)
                    if p.packet_type in wanted and len(getattr(p, "payload", b"")) < 1000)


@settings(max_examples=250, deadline=1000)
@given(st.sampled_from([4, 5]), st.sampled_from(["server", "client"]), st.data())
def test_mutated_valid_streams(level, role, draw):
    """Bit flips, byte replacements, deletions and insertions in a valid stream."""
    data = bytearray(_valid_stream(level, role))
    for _ in range(draw.draw(st.integers(1, 4))):
        i = draw.draw(st.integers(0, len(data) - 1))
        op = draw.draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        if op == "flip":
            data[i] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw.draw(st.integers(0, 255))
        elif op == "delete":
            del data[i]
        else:
            data.insert(i, draw.draw(st.integers(0, 255)))
    agree([bytes(data)], role, level)


def test_mutations_are_caught_not_ignored():
    """Sanity of the fuzz target: a flipped flag bit in each packet's first byte fails."""
    for level in (4, 5):
        stream = _valid_stream(level, "client")
        assert agree([stream], "client", level)[1] is None
        for bit in range(4):
            bad = bytes([stream[0] ^ (1 << bit)]) + stream[1:]
            assert agree([bad], "client", level)[1] in (0x81, 0x82)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_oversize_announcement_fails_before_the_body(codec):
    """A 1 MB announcement against a 64 KiB limit fails on its 4th byte: 0x95."""
    parser = CODECS[codec].MqttParser(max_packet_size=65536, role="client", protocol_level=4)
    header = b"\x30" + bytes([0x80, 0x80, 0x40])  # remaining length 1 048 576
    assert parser.feed(header[:3]) == []
    with pytest.raises(MqttProtocolError) as ei:
        parser.feed(header[3:])
    assert ei.value.reason_code == 0x95
    assert isinstance(ei.value, PeerDataError)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_limit_counts_the_whole_packet(codec):
    """max_packet_size bounds the fixed header plus the body (MQTT 5 §3.1.2.11.4)."""
    pkt = CODECS[codec].encode_publish("t", b"x" * 10, protocol_level=4)  # 2 + 13 bytes
    assert agree([pkt], "client", 4, max_packet_size=len(pkt)) == ([P.Publish("t", b"x" * 10)],
                                                                   None)
    assert agree([pkt], "client", 4, max_packet_size=len(pkt) - 1) == ([], 0x95)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"\x30\xff\xff\xff\xff", 0x81),  # 5-byte remaining length (§1.5.5)
        (b"\x30\xff\xff\xff\xff\x01", 0x81),
        (b"\x30\x80\x00", 0x81),  # non-minimal remaining length
        (b"\x30\x04\x00\x02\xc3\x28", 0x81),  # invalid UTF-8 in topic
        (b"\x30\x05\x00\x03\xed\xa0\x80", 0x81),  # UTF-16 surrogate encoded as UTF-8
        (b"\x30\x05\x00\x03a\x00b", 0x81),  # U+0000 in topic
        (b"\x30\x05\x00\x03a/#", 0x90),  # wildcard in PUBLISH topic
        (b"\x30\x05\x00\x09abc", 0x81),  # topic length past the end
        (b"\x36\x03\x00\x01a", 0x81),  # QoS 3
        (b"\x38\x03\x00\x01a", 0x81),  # DUP on QoS 0
        (b"\x00\x00", 0x81),  # reserved packet type 0
        (b"\xf0\x00", 0x81),  # AUTH in MQTT 3.1.1
        (b"\xc1\x00", 0x81),  # PINGREQ with a flag bit
        (b"\x60\x02\x00\x01", 0x81),  # PUBREL flags must be 0010
        (b"\x80\x06\x00\x01\x00\x01a\x00", 0x81),  # SUBSCRIBE flags must be 0010
        (b"\x40\x03\x00\x01\x00", 0x81),  # PUBACK longer than 2 bytes in 3.1.1
        (b"\xc0\x01\x00", 0x81),  # PINGREQ with a body
        (b"\x20\x02\x00\x00", 0x82),  # CONNACK sent to a server
        (b"\x32\x03\x00\x01a", 0x81),  # QoS 1 without packet identifier
        (b"\x32\x05\x00\x01a\x00\x00", 0x82),  # packet identifier 0
    ],
)
def test_known_bad_inputs(data, code):
    for cut in (len(data), 1):
        assert agree([data[:cut], data[cut:]], "server", 4)[1] == code


def test_error_keeps_packets_decoded_before_it():
    """A bad packet after good ones: the good ones are on MqttProtocolError.packets."""
    good = ref_codec.encode_publish("a/b", b"1", 1, packet_id=1, protocol_level=4)
    for codec in CODECS.values():
        parser = codec.MqttParser(protocol_level=4)
        with pytest.raises(MqttProtocolError) as ei:
            parser.feed(good + good + b"\x36\x00")
        assert ei.value.packets == [P.Publish("a/b", b"1", 1, packet_id=1)] * 2
        assert parser.failed
        with pytest.raises(UsageError):
            parser.feed(good)


def test_client_parser_needs_a_protocol_level():
    for codec in CODECS.values():
        with pytest.raises(UsageError):
            codec.MqttParser(role="client").feed(b"\xd0\x00")
        with pytest.raises(UsageError):
            codec.MqttParser(role="broker")
        with pytest.raises(UsageError):
            codec.MqttParser(max_packet_size=1)
        with pytest.raises(UsageError):
            codec.MqttParser(protocol_level=3)


def test_slow_trickle_of_a_large_packet_buffers_only_what_arrived():
    """An announced 200 MB body that never comes holds only the bytes received."""
    for codec in CODECS.values():
        parser = codec.MqttParser(role="client", protocol_level=4)
        header = b"\x30" + bytes([0x80, 0x80, 0x80, 0x60])
        assert parser.feed(header + b"\x00\x01t" + b"x" * 1000) == []
        assert parser.pending_bytes == 5 + 3 + 1000
