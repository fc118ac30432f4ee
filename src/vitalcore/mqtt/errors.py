"""Errors of the MQTT codec.

:class:`MqttProtocolError` is the only exception :class:`~vitalcore.mqtt.MqttParser`
raises for bad bytes from a peer. It carries the MQTT 5 reason code the broker should
put in its CONNACK or DISCONNECT before closing (MQTT 3.1.1 peers just get the
connection closed), and the packets decoded from the same ``feed`` call before the
fault, so none of them is lost.
"""

from __future__ import annotations

from typing import Any

from ..errors import PeerDataError

__all__ = ["MqttProtocolError"]


class MqttProtocolError(PeerDataError):
    """A peer sent bytes that break MQTT 3.1.1 or MQTT 5.0.

    MQTT requires closing the network connection after such a fault, so the parser
    that raised it refuses further input.

    Parameters
    ----------
    reason_code : int
        MQTT 5 reason code for the CONNACK/DISCONNECT the server should send:
        0x81 malformed packet, 0x82 protocol error, 0x84 unsupported protocol version,
        0x8F topic filter invalid, 0x90 topic name invalid, 0x95 packet too large.
    message : str
        What was wrong, for logs.

    Attributes
    ----------
    reason_code : int
    packets : list
        Packets decoded completely from the same ``feed`` call before the fault, in
        wire order. The transport should act on them (e.g. deliver a PUBLISH) before
        it closes the connection.
    """

    def __init__(self, reason_code: int, message: str) -> None:
        self.reason_code = reason_code
        self.message = message
        self.packets: list[Any] = []
        super().__init__(f"0x{reason_code:02X}: {message}")

    def __reduce__(self):  # keep reason_code through pickling (multiprocessing, logging)
        return (type(self), (self.reason_code, self.message))
