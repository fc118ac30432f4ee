"""Spec corner cases, one test per rule, citing MQTT 5.0 / 3.1.1 sections.

Each case builds the offending bytes by hand and requires the same reason code from
the Cython parser and the reference twin.
"""

from __future__ import annotations

import pytest
from mqtt_helpers import CODECS, agree, connect_bytes

from vitalcore.errors import UsageError
from vitalcore.mqtt import packets as P

PROPS_NONE = b"\x00"


def frame(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 127 else 0))
        n >>= 7
        if not n:
            break
    return bytes([first]) + bytes(out) + body


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def connect(level=4, flags=0x02, name="MQTT", tail=b"", props=PROPS_NONE) -> bytes:
    body = s(name) + bytes([level, flags]) + b"\x00\x3c"
    body += (props if level == 5 else b"") + s("c1") + tail
    return frame(0x10, body)


def server(data: bytes, level=None):
    return agree([data], "server", level)


def client(data: bytes, level):
    return agree([data], "client", level)


# ---------------------------------------------------------------------------- CONNECT
def test_3_1_2_1_unknown_protocol_name_is_unsupported_version():
    assert server(connect(name="MQIsdp", level=3))[1] == 0x84
    assert server(connect(name="HTTP"))[1] == 0x84


def test_3_1_2_2_unknown_protocol_level_is_unsupported_version():
    assert server(connect(level=6))[1] == 0x84
    assert server(connect(level=3))[1] == 0x84


def test_3_1_2_3_reserved_connect_flag():
    assert server(connect(flags=0x03))[1] == 0x81


def test_3_1_2_11_will_qos_and_retain_need_the_will_flag():
    assert server(connect(flags=0x0A))[1] == 0x81  # Will QoS 1 without Will Flag
    assert server(connect(flags=0x22))[1] == 0x81  # Will Retain without Will Flag


def test_3_1_2_12_will_qos_3():
    tail = s("w") + s(b"x")
    assert server(connect(flags=0x1E, tail=tail))[1] == 0x81


def test_3_1_3_3_will_topic_must_be_a_topic_name():
    assert server(connect(flags=0x06, tail=s("w/#") + s(b"x")))[1] == 0x90
    assert server(connect(flags=0x06, tail=s("") + s(b"x")))[1] == 0x90


def test_3_1_1_password_needs_user_name_but_not_in_mqtt5():
    """MQTT 3.1.1 [MQTT-3.1.2-22]; MQTT 5 §3.1.2.9 allows a password alone."""
    assert server(connect(level=4, flags=0x42, tail=s(b"pw")))[1] == 0x81
    pkts, err = server(connect(level=5, flags=0x42, tail=s(b"pw")))
    assert err is None and pkts[0].password == b"pw" and pkts[0].username is None


def test_3_1_0_1_first_packet_must_be_connect():
    assert server(b"\xc0\x00")[1] == 0x82
    assert server(frame(0x30, s("a") + b"x"))[1] == 0x82


def test_3_1_0_2_second_connect_is_a_protocol_error():
    pkts, err = server(connect() + connect())
    assert len(pkts) == 1 and err == 0x82


def test_3_1_connect_must_not_have_trailing_bytes():
    assert server(connect(tail=b"\x00"))[1] == 0x81


def test_3_1_version_learned_from_connect_governs_later_packets():
    """After a v5 CONNECT a PUBACK may carry a reason code; after a v3.1.1 one it may not."""
    puback = b"\x40\x03\x00\x01\x10"
    assert server(connect(level=5) + puback) == (
        [server(connect(level=5))[0][0], P.PubAck(1, 0x10)], None)
    assert server(connect(level=4) + puback)[1] == 0x81


# ---------------------------------------------------------------------------- CONNACK
def test_3_2_2_1_connack_reserved_flags():
    assert client(b"\x20\x02\x02\x00", 4)[1] == 0x81


def test_3_2_2_2_session_present_with_refusal():
    assert client(b"\x20\x02\x01\x05", 4)[1] == 0x82
    assert client(b"\x20\x03\x01\x87\x00", 5)[1] == 0x82


def test_3_2_2_3_unknown_return_code():
    assert client(b"\x20\x02\x00\x06", 4)[1] == 0x82
    assert client(b"\x20\x03\x00\x01\x00", 5)[1] == 0x82  # 0x01 is no CONNACK reason


# ---------------------------------------------------------------------------- PUBLISH
def test_3_3_1_2_qos_3_is_malformed():
    assert client(b"\x36\x05\x00\x01a\x00\x01", 4)[1] == 0x81


def test_3_3_2_1_topic_name_without_wildcards():
    for topic in ("+", "a/+/b", "#", "a/#"):
        assert client(frame(0x30, s(topic)), 4)[1] == 0x90


def test_3_3_2_1_empty_topic_needs_topic_alias_in_mqtt5():
    assert client(frame(0x30, s("") + b"x"), 4)[1] == 0x82
    assert client(frame(0x30, s("") + PROPS_NONE + b"x"), 5)[1] == 0x82
    pkts, err = client(frame(0x30, s("") + b"\x03\x23\x00\x07" + b"x"), 5)
    assert err is None and pkts == [P.Publish("", b"x", properties=P.Properties(topic_alias=7))]


def test_3_3_2_2_packet_identifier_must_be_non_zero():
    assert client(frame(0x32, s("a") + b"\x00\x00"), 4)[1] == 0x82


def test_3_3_2_3_4_topic_alias_zero():
    assert client(frame(0x30, s("a") + b"\x03\x23\x00\x00"), 5)[1] == 0x82


def test_3_3_2_3_2_payload_format_indicator_is_0_or_1():
    assert client(frame(0x30, s("a") + b"\x02\x01\x02"), 5)[1] == 0x82


def test_3_3_4_publish_may_carry_several_subscription_identifiers():
    body = s("a") + b"\x04\x0b\x01\x0b\x02" + b"pl"
    pkts, err = client(frame(0x30, body), 5)
    assert err is None and pkts[0].properties.subscription_identifiers == [1, 2]
    assert client(frame(0x30, s("a") + b"\x02\x0b\x00"), 5)[1] == 0x82  # identifier 0


# ------------------------------------------------------------------------- properties
def test_2_2_2_2_property_not_allowed_in_packet_type():
    assert client(frame(0x30, s("a") + b"\x05\x11\x00\x00\x00\x01"), 5)[1] == 0x82


def test_2_2_2_2_duplicate_property():
    assert client(frame(0x30, s("a") + b"\x06\x23\x00\x01\x23\x00\x02"), 5)[1] == 0x82


def test_2_2_2_2_user_properties_may_repeat():
    up = b"\x26" + s("k") + s("v1") + b"\x26" + s("k") + s("v2")
    pkts, err = client(frame(0x30, s("a") + bytes([len(up)]) + up), 5)
    assert err is None
    assert pkts[0].properties.user_properties == [("k", "v1"), ("k", "v2")]


def test_2_2_2_2_unknown_property_identifier():
    assert client(frame(0x30, s("a") + b"\x02\x04\x00"), 5)[1] == 0x81


def test_2_2_2_1_property_length_past_the_end():
    assert client(frame(0x30, s("a") + b"\x09\x01\x00"), 5)[1] == 0x81
    assert client(frame(0x30, s("a") + b"\x02\x02\x00"), 5)[1] == 0x81  # value cut short


def test_3_1_2_11_receive_maximum_and_maximum_packet_size_zero():
    assert server(connect(level=5, props=b"\x03\x21\x00\x00"))[1] == 0x82
    assert server(connect(level=5, props=b"\x05\x27\x00\x00\x00\x00"))[1] == 0x82


def test_3_1_3_2_will_properties_allowed_set():
    will = b"\x05\x18\x00\x00\x00\x05" + s("w") + s(b"x")
    assert server(connect(level=5, flags=0x06, tail=will))[1] is None
    bad = b"\x03\x23\x00\x01" + s("w") + s(b"x")  # Topic Alias is no Will property
    assert server(connect(level=5, flags=0x06, tail=bad))[1] == 0x82


# -------------------------------------------------------------------------- SUBSCRIBE
def test_3_8_1_subscribe_fixed_header_flags():
    assert server(connect() + frame(0x80, b"\x00\x01" + s("a") + b"\x00"))[1] == 0x81


def test_3_8_3_subscribe_needs_a_topic_filter():
    assert server(connect() + frame(0x82, b"\x00\x01"))[1] == 0x82
    assert server(connect() + frame(0xA2, b"\x00\x01"))[1] == 0x82  # UNSUBSCRIBE


@pytest.mark.parametrize("flt", ["", "a/#/b", "a#", "#/", "a/b+", "+a", "a/++"])
def test_4_7_1_invalid_topic_filters(flt):
    assert server(connect() + frame(0x82, b"\x00\x01" + s(flt) + b"\x00"))[1] == 0x8F
    assert server(connect() + frame(0xA2, b"\x00\x01" + s(flt)))[1] == 0x8F


@pytest.mark.parametrize("flt", ["#", "+", "a/+", "+/+", "/", "a//b", "+/#", "$SYS/#", "a/+/#"])
def test_4_7_1_valid_topic_filters(flt):
    pkts, err = server(connect() + frame(0x82, b"\x00\x01" + s(flt) + b"\x01"))
    assert err is None and pkts[1] == P.Subscribe(1, [P.Subscription(flt, 1)])


@pytest.mark.parametrize("flt", ["$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a"])
def test_4_8_2_invalid_shared_subscriptions(flt):
    assert server(connect(level=5) + frame(0x82, b"\x00\x01\x00" + s(flt) + b"\x00"))[1] == 0x8F


def test_4_8_2_share_prefix_is_an_ordinary_level_in_mqtt_3_1_1():
    pkts, err = server(connect(level=4) + frame(0x82, b"\x00\x01" + s("$share/g") + b"\x00"))
    assert err is None and pkts[1].subscriptions[0].topic_filter == "$share/g"


def test_3_8_3_1_no_local_on_shared_subscription():
    body = b"\x00\x01\x00" + s("$share/g/a") + b"\x04"
    assert server(connect(level=5) + frame(0x82, body))[1] == 0x82


def test_3_8_3_1_reserved_option_bits_and_retain_handling_3():
    assert server(connect(level=4) + frame(0x82, b"\x00\x01" + s("a") + b"\x04"))[1] == 0x81
    assert server(connect(level=5) + frame(0x82, b"\x00\x01\x00" + s("a") + b"\x40"))[1] == 0x81
    assert server(connect(level=5) + frame(0x82, b"\x00\x01\x00" + s("a") + b"\x30"))[1] == 0x81
    assert server(connect(level=4) + frame(0x82, b"\x00\x01" + s("a") + b"\x03"))[1] == 0x81


def test_3_8_2_1_2_one_subscription_identifier_in_subscribe():
    body = b"\x00\x01\x04\x0b\x01\x0b\x02" + s("a") + b"\x00"
    assert server(connect(level=5) + frame(0x82, body))[1] == 0x82


# ------------------------------------------------------------------------ acks, misc
def test_3_9_3_suback_return_codes():
    assert client(frame(0x90, b"\x00\x01\x03"), 4)[1] == 0x82
    assert client(frame(0x90, b"\x00\x01"), 4)[1] == 0x82  # no return code at all


def test_3_11_unsuback_has_no_payload_in_3_1_1():
    assert client(frame(0xB0, b"\x00\x01\x00"), 4)[1] == 0x81
    assert client(frame(0xB0, b"\x00\x01\x00"), 5)[1] == 0x82  # MQTT 5: needs a reason


def test_3_4_2_1_unknown_puback_reason_code():
    assert client(frame(0x40, b"\x00\x01\x04"), 5)[1] == 0x82


def test_3_14_disconnect_in_3_1_1_has_no_body():
    assert server(connect(level=4) + b"\xe0\x01\x00")[1] == 0x81
    pkts, err = server(connect(level=5) + b"\xe0\x01\x04")
    assert err is None and pkts[1] == P.Disconnect(0x04)


def test_3_15_auth_reason_code_needs_property_length():
    assert server(connect(level=5) + b"\xf0\x01\x18")[1] == 0x81
    pkts, err = server(connect(level=5) + b"\xf0\x02\x18\x00")
    assert err is None and pkts[1] == P.Auth(0x18)


def test_direction_is_enforced():
    assert client(frame(0x82, b"\x00\x01" + s("a") + b"\x00"), 4)[1] == 0x82
    assert server(connect() + b"\xd0\x00")[1] == 0x82  # PINGRESP to a server


# -------------------------------------------------------------------- encoder misuse
BAD_ENCODES = [
    lambda c: c.encode_publish("a/+", b"", protocol_level=4),
    lambda c: c.encode_publish("", b"", protocol_level=4),
    lambda c: c.encode_publish("a\0", b"", protocol_level=4),
    lambda c: c.encode_publish("\ud800", b"", protocol_level=4),
    lambda c: c.encode_publish("a" * 65536, b"", protocol_level=4),
    lambda c: c.encode_publish("a", b"", 3, protocol_level=4),
    lambda c: c.encode_publish("a", b"", 1, protocol_level=4),  # no packet id
    lambda c: c.encode_publish("a", b"", 1, packet_id=65536, protocol_level=4),
    lambda c: c.encode_publish("a", b"", 0, dup=True, protocol_level=4),
    lambda c: c.encode_publish("a", b"", protocol_level=3),
    lambda c: c.encode_publish("a", b"", properties=P.Properties(), protocol_level=4),
    lambda c: c.encode_publish("a", b"", properties=P.Properties(receive_maximum=1),
                               protocol_level=5),
    lambda c: c.encode_publish("a", b"", properties=P.Properties(topic_alias=0),
                               protocol_level=5),
    lambda c: c.encode_publish("a", b"", properties=P.Properties(payload_format_indicator=2),
                               protocol_level=5),
    lambda c: c.encode_puback(0, protocol_level=4),
    lambda c: c.encode_puback(1, 0x10, protocol_level=4),
    lambda c: c.encode_puback(1, 0x04, protocol_level=5),
    lambda c: c.encode(P.Subscribe(1, []), 4),
    lambda c: c.encode(P.Subscribe(1, [P.Subscription("a/#/b")]), 4),
    lambda c: c.encode(P.Subscribe(1, [P.Subscription("a", 1, no_local=True)]), 4),
    lambda c: c.encode(P.Subscribe(1, [P.Subscription("$share/g/a", 1, no_local=True)]), 5),
    lambda c: c.encode(P.Unsubscribe(1, ["#/a"]), 5),
    lambda c: c.encode(P.SubAck(1, [3]), 4),
    lambda c: c.encode(P.UnsubAck(1, [0]), 4),
    lambda c: c.encode(P.ConnAck(True, 5), 4),
    lambda c: c.encode(P.ConnAck(False, 6), 4),
    lambda c: c.encode(P.Auth(), 4),
    lambda c: c.encode(P.Disconnect(0x8B), 4),
    lambda c: c.encode(P.Connect(5, "c"), 4),
    lambda c: c.encode(P.Connect(4, "c", password=b"x"), 4),
    lambda c: c.encode(P.Connect(4, "c", will=P.Will("w/#", b"")), 4),
    lambda c: c.encode(P.Connect(4, "c", keep_alive=70000), 4),
    lambda c: c.encode("not a packet", 4),
]


@pytest.mark.parametrize("case", range(len(BAD_ENCODES)))
def test_encoders_refuse_what_a_peer_would_reject(case):
    for codec in CODECS.values():
        with pytest.raises(UsageError):
            BAD_ENCODES[case](codec)


def test_connect_bytes_helper_is_valid():
    assert server(connect_bytes(5))[0][0].protocol_level == 5
