"""Invariants of the MQTT 3.1.1 / 5.0 packet codec, checked on arbitrary bytes.

:func:`check` is the fuzz target of ``fuzz_mqtt.py`` and the oracle of the regression
tests in ``tests/fuzz``. It feeds the input in fragments to the Cython parser and to
its pure-Python twin, in a parser setup chosen by the control flags, and raises
``AssertionError`` if:

1. a parser raises anything but :class:`~vitalcore.mqtt.MqttProtocolError` on peer
   bytes, or keeps accepting input after raising it (it must refuse with UsageError);
2. the two parsers differ in the packets of any ``feed``, in the error (reason code and
   the packets decoded before it), ``pending_bytes``, ``failed`` or ``protocol_level``;
3. a parser holds more bytes than the maximum packet size it was given (a fixed header
   of at most 5 bytes aside);
4. a decoded packet cannot be encoded by both encoders at the parser's protocol level,
   the two encoders give different bytes, or the bytes do not decode (both parsers, one
   feed) to exactly that packet.

Flags (control byte 0): bits 0-2 pick the parser setup (role and protocol level),
bits 3-5 the maximum packet size, bit 6 prepends a valid CONNECT for a server parser
that has not seen one (so the fuzzer does not have to build one to get past it).
"""

from __future__ import annotations

from fuzzlib import chunks, control

from vitalcore._ext import mqttcodec as ext
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import _refcodec as ref
from vitalcore.mqtt import packets as P

SETUPS = (("server", None), ("server", 4), ("server", 5), ("client", 4), ("client", 5),
          ("server", None), ("client", 5), ("server", 5))
MAX_SIZES = (P.MAX_REMAINING_LENGTH, 2, 7, 64, 300, 4096, 65536, P.MAX_REMAINING_LENGTH + 5)
#: Packet types a server receives; the others go to a client (some go both ways).
SERVER_RECEIVES = frozenset(ref.RECEIVES["server"])
HEADER_MAX = 5


def check(data: bytes) -> None:
    flags, seed, payload = control(data)
    role, level = SETUPS[flags & 7]
    max_size = MAX_SIZES[(flags >> 3) & 7]
    if flags & 0x40 and role == "server" and level is None:
        payload = ref.encode(P.Connect(5 if flags & 0x80 else 4, "fuzz", True, 30),
                             5 if flags & 0x80 else 4) + payload
    parsers = [ext.MqttParser(max_size, role, level), ref.MqttParser(max_size, role, level)]
    limit = max(parsers[0].max_packet_size, HEADER_MAX)
    for chunk in chunks(payload, seed):
        results = [_feed(p, chunk) for p in parsers]
        assert results[0] == results[1], ("parsers differ", results)
        packets, error = results[0]
        states = [(p.failed, p.protocol_level, p.pending_bytes) for p in parsers]
        assert states[0] == states[1], ("parser state differs", states)
        for p in parsers:
            assert p.pending_bytes <= limit, ("parser holds more than the maximum",
                                              p.pending_bytes, limit)
        for packet in packets:
            _round_trip(packet, parsers[0].protocol_level or packet.protocol_level)
        if error is not None:
            for p in parsers:
                try:
                    p.feed(b"\xc0\x00")
                except UsageError:
                    continue
                raise AssertionError("a failed parser accepted more input")
            return


def _feed(parser, chunk: bytes) -> tuple[list, int | None]:
    try:
        return parser.feed(chunk), None
    except MqttProtocolError as e:
        assert parser.failed, "MqttProtocolError without the parser failing"
        assert e.reason_code in (0x81, 0x82, 0x84, 0x8F, 0x90, 0x95), hex(e.reason_code)
        return e.packets, e.reason_code


def _round_trip(packet: P.Packet, level: int) -> None:
    try:
        ours, theirs = ext.encode(packet, level), ref.encode(packet, level)
    except UsageError as e:
        raise AssertionError(f"decoded packet not encodable at level {level}: {packet!r}") from e
    assert ours == theirs, ("encoders differ", packet, ours.hex(), theirs.hex())
    for codec in (ext, ref):
        if packet.packet_type == P.PacketType.CONNECT:
            parser = codec.MqttParser(role="server")
        else:
            role = "server" if packet.packet_type in SERVER_RECEIVES else "client"
            parser = codec.MqttParser(role=role, protocol_level=level)
        again = parser.feed(ours)
        assert again == [packet], ("round trip changed the packet", packet, again)
        assert parser.pending_bytes == 0
