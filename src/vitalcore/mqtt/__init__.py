"""MQTT 3.1.1 / 5.0 packet codec and topic matching for the broker, no I/O.

- :class:`MqttParser` -- incremental decoder: ``feed(buffer) -> list of packets``.
- :func:`encode` and the hot-path encoders :func:`encode_publish`,
  :func:`encode_puback`, :func:`encode_pubrec`, :func:`encode_pubrel`,
  :func:`encode_pubcomp`.
- Packet classes (:mod:`vitalcore.mqtt.packets`), :class:`MqttProtocolError`.
- :func:`topic_matches` and :class:`SubscriptionTree` (:mod:`vitalcore.mqtt.topics`).

The parser and encoders come from the Cython extension ``vitalcore._ext.mqttcodec``;
there is no silent fallback to the pure-Python twin (``vitalcore.mqtt._refcodec``),
which exists for the equivalence tests. The extension is imported on first use of one
of its names (it imports :mod:`vitalcore.mqtt.packets` itself).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import MqttProtocolError
from .packets import (
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from .topics import SubscriptionTree, topic_filter_error, topic_matches, topic_name_error

if TYPE_CHECKING:
    from .._ext.mqttcodec import (
        MqttParser,
        encode,
        encode_puback,
        encode_pubcomp,
        encode_publish,
        encode_pubrec,
        encode_pubrel,
    )

__all__ = [
    "MqttParser",
    "encode",
    "encode_publish",
    "encode_puback",
    "encode_pubrec",
    "encode_pubrel",
    "encode_pubcomp",
    "MqttProtocolError",
    "MQTT_3_1_1",
    "MQTT_5",
    "PacketType",
    "ReasonCode",
    "Packet",
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
    "SubscriptionTree",
    "topic_matches",
    "topic_name_error",
    "topic_filter_error",
]

_CODEC_NAMES = frozenset(
    {"MqttParser", "encode", "encode_publish", "encode_puback", "encode_pubrec",
     "encode_pubrel", "encode_pubcomp"}
)


def __getattr__(name: str) -> Any:
    if name not in _CODEC_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        ext = importlib.import_module("vitalcore._ext.mqttcodec")
    except ModuleNotFoundError as exc:  # a broken install, said loudly
        raise ImportError(
            "vitalcore._ext.mqttcodec is not built; build the extensions "
            "(pip install . or cythonize -i src/vitalcore/_ext/mqttcodec.pyx)"
        ) from exc
    for n in _CODEC_NAMES:
        globals()[n] = getattr(ext, n)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CODEC_NAMES)
