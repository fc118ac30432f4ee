"""Sample packets and helpers shared by the MQTT codec tests.

Every parser/encoder test runs against both implementations: the Cython extension
(``ext``) and the pure-Python reference twin (``ref``). (A uniquely named module, not
``conftest``, so that test directories of other subsystems cannot shadow it.)
"""

from __future__ import annotations

import pytest

from vitalcore._ext import mqttcodec as ext_codec
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import _refcodec as ref_codec
from vitalcore.mqtt import packets as P

CODECS = {"ext": ext_codec, "ref": ref_codec}


#: Packet types a server receives (the rest are received by clients; PUBLISH,
#: the publish acknowledgements, DISCONNECT and AUTH go both ways).
SERVER_RECEIVES = {1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15}

#: Properties exercising every wire type: byte, two-byte, four-byte, varint, UTF-8,
#: binary, string pair.
PUBLISH_PROPS = P.Properties(
    payload_format_indicator=1,
    message_expiry_interval=0xFFFFFFFF,
    content_type="application/vnd.vc+octets",
    response_topic="vc/v1/dev/000012ab/reply",
    correlation_data=b"\x00\x01\xfe\xff",
    subscription_identifiers=[1, 127, 128, 16383, 16384, 268_435_455],
    topic_alias=65535,
    user_properties=[("ward", "3B"), ("ward", "4A"), ("", ""), ("ключ", "значение")],
)


def sample_packets(level: int) -> list[P.Packet]:
    """One or more packets of every type valid at ``level`` (4 or 5)."""
    v5 = level == P.MQTT_5

    def props(**kw):
        return P.Properties(**kw) if v5 else None

    will = P.Will(
        "vc/v1/dev/000012ab/status",
        b"offline",
        1,
        True,
        props(will_delay_interval=30, payload_format_indicator=1, message_expiry_interval=60,
              content_type="text/plain", response_topic="r/t", correlation_data=b"c",
              user_properties=[("k", "v")]),
    )
    out: list[P.Packet] = [
        P.Connect(level, "dev-000012ab", True, 60),
        P.Connect(level, "", False, 0, "nurse", b"\x00secret\xff", will,
                  props(session_expiry_interval=3600, receive_maximum=20,
                        maximum_packet_size=1 << 20, topic_alias_maximum=10,
                        request_response_information=1, request_problem_information=0,
                        authentication_method="SCRAM-SHA-1", authentication_data=b"\x01\x02",
                        user_properties=[("fw", "1.2.3")])),
        P.ConnAck(False, 0),
        P.ConnAck(True, 0, props(
            session_expiry_interval=0, receive_maximum=100, maximum_qos=1, retain_available=0,
            maximum_packet_size=65536, assigned_client_identifier="auto-1",
            topic_alias_maximum=0, reason_string="ok", wildcard_subscription_available=1,
            subscription_identifier_available=1, shared_subscription_available=0,
            server_keep_alive=120, response_information="resp", server_reference="other",
            authentication_method="m", authentication_data=b"d",
            user_properties=[("a", "b")])),
        P.ConnAck(False, 0x87 if v5 else 5),
        P.Publish("vc/v1/dev/000012ab/up", b"\x00" * 300),
        P.Publish("a", b"", 1, True, True, 1),
        P.Publish("$SYS/x/ü/y z", b"\xff" * 70000, 2, False, False, 65535),
        P.PubAck(1), P.PubRec(2), P.PubRel(3), P.PubComp(65535),
        P.Subscribe(7, [P.Subscription("vc/v1/dev/+/up", 1), P.Subscription("#", 0),
                        P.Subscription("a/+/b/#", 2), P.Subscription("+", 0)]),
        P.SubAck(7, [0, 1, 2, 0x80]),
        P.Unsubscribe(8, ["vc/v1/dev/+/up", "#"]),
        P.UnsubAck(8, [0, 0x11] if v5 else []),
        P.PingReq(),
        P.PingResp(),
        P.Disconnect(),
    ]
    if v5:
        out += [
            P.Publish("vc/t", b"p", 1, False, False, 9, PUBLISH_PROPS),
            P.Publish("", b"aliased", 0, False, False, 0, P.Properties(topic_alias=3)),
            P.PubAck(1, 0x10), P.PubAck(2, 0x80, P.Properties(reason_string="quota")),
            P.PubAck(3, 0, P.Properties(user_properties=[("x", "y")])),
            P.PubRec(4, 0x97), P.PubRel(5, 0x92, P.Properties(reason_string="?")),
            P.PubComp(6, 0x92),
            P.Subscribe(9, [P.Subscription("$share/ward3/vc/+/up", 1, False, True, 2),
                            P.Subscription("x/y", 2, True, False, 1)],
                        P.Properties(subscription_identifiers=[42], user_properties=[("a", "")])),
            P.SubAck(9, [1, 0x8F, 0x9E, 0xA1, 0xA2], P.Properties(reason_string="partly")),
            P.Unsubscribe(10, ["x/y"], P.Properties(user_properties=[("u", "v")])),
            P.UnsubAck(10, [0x8F], P.Properties(reason_string="bad filter")),
            P.Disconnect(0x04),
            P.Disconnect(0x8E, P.Properties(reason_string="taken over", session_expiry_interval=0,
                                            server_reference="b", user_properties=[("a", "b")])),
            P.Auth(),
            P.Auth(0x18, P.Properties(authentication_method="SCRAM", authentication_data=b"\x00")),
            P.Auth(0x19, None),
        ]
    return out


def receiver(codec, packet: P.Packet, level: int):
    """A parser of the side that receives ``packet``, ready for it."""
    if packet.packet_type == P.PacketType.CONNECT:
        return codec.MqttParser(role="server")
    role = "server" if packet.packet_type in SERVER_RECEIVES else "client"
    return codec.MqttParser(role=role, protocol_level=level)


def connect_bytes(level: int) -> bytes:
    return ref_codec.encode(P.Connect(level, "dev-1", True, 30), level)


def outcome(codec, chunks, role="server", level=None, max_packet_size=P.MAX_REMAINING_LENGTH):
    """Feed ``chunks``; return (packets, reason code or None)."""
    parser = codec.MqttParser(max_packet_size, role, level)
    got = []
    for chunk in chunks:
        try:
            got += parser.feed(chunk)
        except MqttProtocolError as e:
            got += e.packets
            assert parser.failed
            with pytest.raises(UsageError):
                parser.feed(b"\xc0\x00")
            return got, e.reason_code
    assert not parser.failed
    return got, None


def agree(chunks, role, level, max_packet_size=P.MAX_REMAINING_LENGTH):
    results = [outcome(c, chunks, role, level, max_packet_size) for c in CODECS.values()]
    assert results[0] == results[1], results
    return results[0]
