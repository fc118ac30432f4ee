"""Typed stubs of the MQTT 3.1.1 / 5.0 packet codec (Cython)."""

from typing import Literal, TypeAlias

from vitalcore.mqtt.packets import Packet, Properties

Buffer: TypeAlias = bytes | bytearray | memoryview

class MqttParser:
    def __init__(
        self,
        max_packet_size: int = 268435455,
        role: Literal["server", "client"] = "server",
        protocol_level: Literal[4, 5] | None = None,
    ) -> None: ...
    @property
    def role(self) -> Literal["server", "client"]: ...
    @property
    def max_packet_size(self) -> int: ...
    @max_packet_size.setter
    def max_packet_size(self, value: int) -> None: ...
    @property
    def protocol_level(self) -> int: ...
    @protocol_level.setter
    def protocol_level(self, value: Literal[4, 5]) -> None: ...
    @property
    def failed(self) -> bool: ...
    @property
    def pending_bytes(self) -> int: ...
    def feed(self, data: Buffer) -> list[Packet]: ...

def encode(packet: Packet, protocol_level: Literal[4, 5]) -> bytes: ...
def encode_publish(
    topic: str,
    payload: Buffer,
    qos: Literal[0, 1, 2] = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties: Properties | None = None,
    *,
    protocol_level: Literal[4, 5],
) -> bytes: ...
def encode_puback(
    packet_id: int, reason_code: int = 0, properties: Properties | None = None, *,
    protocol_level: Literal[4, 5],
) -> bytes: ...
def encode_pubrec(
    packet_id: int, reason_code: int = 0, properties: Properties | None = None, *,
    protocol_level: Literal[4, 5],
) -> bytes: ...
def encode_pubrel(
    packet_id: int, reason_code: int = 0, properties: Properties | None = None, *,
    protocol_level: Literal[4, 5],
) -> bytes: ...
def encode_pubcomp(
    packet_id: int, reason_code: int = 0, properties: Properties | None = None, *,
    protocol_level: Literal[4, 5],
) -> bytes: ...
