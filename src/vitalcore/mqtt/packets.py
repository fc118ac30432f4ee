"""MQTT 3.1.1 / 5.0 packet types and the spec tables both codecs share.

Every decoded packet is a small :class:`msgspec.Struct`; the same classes are passed to
:func:`vitalcore.mqtt.encode`. Fields that only exist in MQTT 5 (``properties``,
reason codes of acknowledgements) keep their defaults for MQTT 3.1.1.

Numbers in this module are copied from the OASIS standards: MQTT Version 3.1.1 (2014)
and MQTT Version 5.0 (2019); section numbers refer to the latter unless stated.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import msgspec

__all__ = [
    "PacketType",
    "ReasonCode",
    "PropType",
    "PROPERTIES",
    "PROPERTY_IDS",
    "BOOL_PROPERTIES",
    "NONZERO_PROPERTIES",
    "WILL_PROPERTIES",
    "REASON_CODES",
    "CONNACK_V3_RETURN_CODES",
    "SUBACK_V3_RETURN_CODES",
    "MQTT_3_1_1",
    "MQTT_5",
    "MAX_REMAINING_LENGTH",
    "MAX_VARINT",
    "Properties",
    "Will",
    "Subscription",
    "Connect",
    "ConnAck",
    "Publish",
    "PubAck",
    "PubRec",
    "PubRel",
    "PubComp",
    "Subscribe",
    "SubAck",
    "Unsubscribe",
    "UnsubAck",
    "PingReq",
    "PingResp",
    "Disconnect",
    "Auth",
    "Packet",
]

MQTT_3_1_1 = 4  #: protocol level byte of MQTT 3.1.1
MQTT_5 = 5  #: protocol level byte of MQTT 5.0
MAX_REMAINING_LENGTH = 268_435_455  #: largest Remaining Length (4-byte varint), §1.5.5
MAX_VARINT = MAX_REMAINING_LENGTH


class PacketType(enum.IntEnum):
    """Control packet type: the high nibble of the first byte (§2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  #: MQTT 5 only; reserved in 3.1.1


class ReasonCode(enum.IntEnum):
    """MQTT 5 reason codes (§2.4)."""

    SUCCESS = 0x00  #: also NORMAL_DISCONNECTION and GRANTED_QOS_0
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


_T = PacketType
#: MQTT 5 reason codes each packet type may carry (§3.2.2.2, 3.4.2.1, ..., 3.15.2.1).
REASON_CODES: dict[int, frozenset[int]] = {
    _T.CONNACK: frozenset(
        {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C}
        | {0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
    ),
    _T.PUBACK: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    _T.PUBREC: frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}),
    _T.PUBREL: frozenset({0x00, 0x92}),
    _T.PUBCOMP: frozenset({0x00, 0x92}),
    _T.SUBACK: frozenset({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}),
    _T.UNSUBACK: frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}),
    _T.DISCONNECT: frozenset(
        {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90}
        | {0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F}
        | {0xA0, 0xA1, 0xA2}
    ),
    _T.AUTH: frozenset({0x00, 0x18, 0x19}),
}
#: MQTT 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3) and SUBACK return codes (§3.9.3).
CONNACK_V3_RETURN_CODES = frozenset({0, 1, 2, 3, 4, 5})
SUBACK_V3_RETURN_CODES = frozenset({0x00, 0x01, 0x02, 0x80})


class PropType(enum.IntEnum):
    """Wire type of an MQTT 5 property value (§2.2.2.2)."""

    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 3
    VARINT = 4
    UTF8 = 5
    BINARY = 6
    STRING_PAIR = 7


#: Pseudo packet type used in :data:`PROPERTIES` for the Will Properties of CONNECT.
WILL_PROPERTIES = 0

_B, _2, _4, _V = PropType.BYTE, PropType.TWO_BYTE, PropType.FOUR_BYTE, PropType.VARINT
_S, _BIN, _P = PropType.UTF8, PropType.BINARY, PropType.STRING_PAIR
_W = WILL_PROPERTIES
_ALL = frozenset(
    {_W, _T.CONNECT, _T.CONNACK, _T.PUBLISH, _T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP}
    | {_T.SUBSCRIBE, _T.SUBACK, _T.UNSUBSCRIBE, _T.UNSUBACK, _T.DISCONNECT, _T.AUTH}
)
_REASON_STRING = frozenset(
    {_T.CONNACK, _T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP, _T.SUBACK, _T.UNSUBACK}
    | {_T.DISCONNECT, _T.AUTH}
)

#: Property identifier -> (attribute of :class:`Properties`, wire type, packet types
#: allowed to carry it), from the table of §2.2.2.2.
PROPERTIES: dict[int, tuple[str, PropType, frozenset[int]]] = {
    0x01: ("payload_format_indicator", _B, frozenset({_T.PUBLISH, _W})),
    0x02: ("message_expiry_interval", _4, frozenset({_T.PUBLISH, _W})),
    0x03: ("content_type", _S, frozenset({_T.PUBLISH, _W})),
    0x08: ("response_topic", _S, frozenset({_T.PUBLISH, _W})),
    0x09: ("correlation_data", _BIN, frozenset({_T.PUBLISH, _W})),
    0x0B: ("subscription_identifiers", _V, frozenset({_T.PUBLISH, _T.SUBSCRIBE})),
    0x11: ("session_expiry_interval", _4, frozenset({_T.CONNECT, _T.CONNACK, _T.DISCONNECT})),
    0x12: ("assigned_client_identifier", _S, frozenset({_T.CONNACK})),
    0x13: ("server_keep_alive", _2, frozenset({_T.CONNACK})),
    0x15: ("authentication_method", _S, frozenset({_T.CONNECT, _T.CONNACK, _T.AUTH})),
    0x16: ("authentication_data", _BIN, frozenset({_T.CONNECT, _T.CONNACK, _T.AUTH})),
    0x17: ("request_problem_information", _B, frozenset({_T.CONNECT})),
    0x18: ("will_delay_interval", _4, frozenset({_W})),
    0x19: ("request_response_information", _B, frozenset({_T.CONNECT})),
    0x1A: ("response_information", _S, frozenset({_T.CONNACK})),
    0x1C: ("server_reference", _S, frozenset({_T.CONNACK, _T.DISCONNECT})),
    0x1F: ("reason_string", _S, _REASON_STRING),
    0x21: ("receive_maximum", _2, frozenset({_T.CONNECT, _T.CONNACK})),
    0x22: ("topic_alias_maximum", _2, frozenset({_T.CONNECT, _T.CONNACK})),
    0x23: ("topic_alias", _2, frozenset({_T.PUBLISH})),
    0x24: ("maximum_qos", _B, frozenset({_T.CONNACK})),
    0x25: ("retain_available", _B, frozenset({_T.CONNACK})),
    0x26: ("user_properties", _P, _ALL),
    0x27: ("maximum_packet_size", _4, frozenset({_T.CONNECT, _T.CONNACK})),
    0x28: ("wildcard_subscription_available", _B, frozenset({_T.CONNACK})),
    0x29: ("subscription_identifier_available", _B, frozenset({_T.CONNACK})),
    0x2A: ("shared_subscription_available", _B, frozenset({_T.CONNACK})),
}
#: Attribute name -> property identifier.
PROPERTY_IDS: dict[str, int] = {name: pid for pid, (name, _, _) in PROPERTIES.items()}
#: Byte properties whose only legal values are 0 and 1 (a Protocol Error otherwise).
BOOL_PROPERTIES = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
#: Properties for which the value 0 is a Protocol Error (§3.1.2.11.3, 3.1.2.11.4, 3.3.2.3.4,
#: 3.8.2.1.2).
NONZERO_PROPERTIES = frozenset({0x0B, 0x21, 0x23, 0x27})


class Properties(msgspec.Struct, omit_defaults=True, repr_omit_defaults=True):
    """MQTT 5 properties of one packet; ``None`` means the property is absent.

    ``user_properties`` keeps the wire order and may repeat names;
    ``subscription_identifiers`` holds every Subscription Identifier (several in a
    PUBLISH forwarded for overlapping subscriptions, at most one in a SUBSCRIBE).
    Durations are in seconds; sizes in bytes.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: list[int] | None = None
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] | None = None
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


class Will(msgspec.Struct):
    """Will Message of a CONNECT (§3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


class Subscription(msgspec.Struct):
    """One Topic Filter of a SUBSCRIBE with its options (§3.8.3.1).

    ``no_local``, ``retain_as_published`` and ``retain_handling`` (0, 1 or 2) are MQTT 5
    options and stay at their defaults for MQTT 3.1.1.
    """

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


class Connect(msgspec.Struct):
    """CONNECT (client to server, §3.1). ``protocol_level`` is 4 (3.1.1) or 5."""

    packet_type: ClassVar[int] = PacketType.CONNECT
    protocol_level: int
    client_id: str
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties | None = None


class ConnAck(msgspec.Struct):
    """CONNACK (§3.2). ``reason_code`` is the 3.1.1 return code for MQTT 3.1.1."""

    packet_type: ClassVar[int] = PacketType.CONNACK
    session_present: bool = False
    reason_code: int = 0
    properties: Properties | None = None


class Publish(msgspec.Struct, gc=False):
    """PUBLISH (§3.3). ``packet_id`` is 0 for QoS 0.

    In MQTT 5 ``topic`` may be ``""`` when ``properties.topic_alias`` names it; resolving
    aliases needs connection state and belongs to the transport.
    """

    packet_type: ClassVar[int] = PacketType.PUBLISH
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    properties: Properties | None = None


class _PublishAck(msgspec.Struct, gc=False):
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


class PubAck(_PublishAck):
    """PUBACK (§3.4): QoS 1 acknowledgement."""

    packet_type: ClassVar[int] = PacketType.PUBACK


class PubRec(_PublishAck):
    """PUBREC (§3.5): QoS 2 delivery part 1."""

    packet_type: ClassVar[int] = PacketType.PUBREC


class PubRel(_PublishAck):
    """PUBREL (§3.6): QoS 2 delivery part 2."""

    packet_type: ClassVar[int] = PacketType.PUBREL


class PubComp(_PublishAck):
    """PUBCOMP (§3.7): QoS 2 delivery part 3."""

    packet_type: ClassVar[int] = PacketType.PUBCOMP


class Subscribe(msgspec.Struct):
    """SUBSCRIBE (§3.8): at least one :class:`Subscription`."""

    packet_type: ClassVar[int] = PacketType.SUBSCRIBE
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties | None = None


class SubAck(msgspec.Struct):
    """SUBACK (§3.9): one reason code (granted QoS or failure) per subscription."""

    packet_type: ClassVar[int] = PacketType.SUBACK
    packet_id: int
    reason_codes: list[int]
    properties: Properties | None = None


class Unsubscribe(msgspec.Struct):
    """UNSUBSCRIBE (§3.10): at least one Topic Filter."""

    packet_type: ClassVar[int] = PacketType.UNSUBSCRIBE
    packet_id: int
    topic_filters: list[str]
    properties: Properties | None = None


class UnsubAck(msgspec.Struct):
    """UNSUBACK (§3.11). ``reason_codes`` is empty for MQTT 3.1.1."""

    packet_type: ClassVar[int] = PacketType.UNSUBACK
    packet_id: int
    reason_codes: list[int] = msgspec.field(default_factory=list)
    properties: Properties | None = None


class PingReq(msgspec.Struct, frozen=True, gc=False):
    """PINGREQ (§3.12)."""

    packet_type: ClassVar[int] = PacketType.PINGREQ


class PingResp(msgspec.Struct, frozen=True, gc=False):
    """PINGRESP (§3.13)."""

    packet_type: ClassVar[int] = PacketType.PINGRESP


class Disconnect(msgspec.Struct, gc=False):
    """DISCONNECT (§3.14). MQTT 3.1.1 DISCONNECTs have reason code 0, no properties."""

    packet_type: ClassVar[int] = PacketType.DISCONNECT
    reason_code: int = 0
    properties: Properties | None = None


class Auth(msgspec.Struct, gc=False):
    """AUTH (§3.15, MQTT 5 only): enhanced authentication exchange."""

    packet_type: ClassVar[int] = PacketType.AUTH
    reason_code: int = 0
    properties: Properties | None = None


Packet = (
    Connect | ConnAck | Publish | PubAck | PubRec | PubRel | PubComp | Subscribe | SubAck
    | Unsubscribe | UnsubAck | PingReq | PingResp | Disconnect | Auth
)
