"""Fast invariants of the Cython MQTT packet codec alone, for 10-million-execution campaigns.

:func:`check` is the fuzz target of ``fuzz_mqtt.py --fast`` (``VC_FUZZ_FAST=1``). Unlike
:mod:`mqtt_invariants` it does **not** run the pure-Python reference parser and encoder
(the differential oracle); only ``vitalcore._ext.mqttcodec``. It raises
``AssertionError`` (or lets an unexpected exception through) if:

1. ``feed`` raises anything but :class:`~vitalcore.mqtt.MqttProtocolError` on peer
   bytes, with a reason code outside the documented set (0x81, 0x82, 0x84, 0x8F, 0x90,
   0x95), without ``failed`` set, or the failed parser accepts more input (it must
   refuse with UsageError);
2. a parser holds more bytes than its maximum packet size (plus a fixed header of at
   most 5 bytes) or more than it was fed, or ``failed``/``protocol_level`` change
   without reason (a level is fixed once set; a client's or a preset level never moves);
3. the same bytes fed in two different random splits give different results: the
   packets decoded (in order), the error (reason code, and its packets), ``failed``,
   ``protocol_level`` and ``pending_bytes`` at the end (the parser is a stream parser:
   where the bytes are cut must not matter; the packets an error carries count with
   those of the earlier feeds, since which feed fails depends on the split);
4. byte accounting: when the parser has not failed, the bytes of the complete packets
   (found by walking the fixed headers, type byte and Remaining Length, independently
   of the parser) plus ``pending_bytes`` are not exactly the bytes fed (consumed +
   pending == fed), or the parser returned a different number of packets;
5. a decoded packet is not encodable by the Cython encoder at the parser's level, or
   the decoded packets, so encoded back to back, do not decode (a fresh parser of the
   same setup without a size limit, one feed) to exactly those packets with nothing
   left pending.

What it cannot see (the twin mode does): a packet decoded to wrong but self-consistent
fields in both directions (the encoder and parser sharing one misreading of the spec),
a wrong reason code among the allowed ones.

Flags (control byte 0), as in :mod:`mqtt_invariants`: bits 0-2 the parser setup,
bits 3-5 ``max_packet_size``, bit 6 prepends a valid CONNECT for a server parser that
has not seen one (bit 7: MQTT 5). Control byte 1 seeds the first split; the second
split is seeded by ``(seed + 101) % 256`` (seed 0 = one chunk, 101 = up to 3 cuts).
"""

from __future__ import annotations

from fuzzlib import chunks, control
from mqtt_invariants import HEADER_MAX, MAX_SIZES, SETUPS

from vitalcore._ext import mqttcodec as ext
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttProtocolError
from vitalcore.mqtt import packets as P

REASONS = frozenset({0x81, 0x82, 0x84, 0x8F, 0x90, 0x95})
#: a valid CONNECT per level, prepended for a server parser when flags bit 6 is set
CONNECT = {lvl: ext.encode(P.Connect(lvl, "fuzz", True, 30), lvl) for lvl in (4, 5)}


def check(data: bytes) -> None:
    flags, seed, payload = control(data)
    role, level = SETUPS[flags & 7]
    max_size = MAX_SIZES[(flags >> 3) & 7]
    if flags & 0x40 and role == "server" and level is None:
        payload = CONNECT[5 if flags & 0x80 else 4] + payload
    first = _run(role, level, max_size, chunks(payload, seed))
    second = _run(role, level, max_size, chunks(payload, (seed + 101) % 256))
    assert first == second, ("two splits of the same bytes differ", first, second)
    packets, error, failed, final_level, pending = first
    if not failed:
        n, consumed = _walk(payload)
        assert (len(packets), consumed + pending) == (n, len(payload)), (
            "bytes accounted", len(packets), n, consumed, pending, len(payload))
    if packets:
        _round_trip(packets, role, level, final_level)


def _run(role: str, level: int | None, max_size: int, pieces: list[bytes]) -> tuple:
    parser = ext.MqttParser(max_size, role, level)
    limit = max(parser.max_packet_size, HEADER_MAX)
    packets: list = []
    fed = 0
    for chunk in pieces:
        lvl = parser.protocol_level
        fed += len(chunk)
        try:
            packets += parser.feed(chunk)
        except MqttProtocolError as e:
            assert parser.failed, "MqttProtocolError without the parser failing"
            assert e.reason_code in REASONS, hex(e.reason_code)
            try:
                parser.feed(b"\xc0\x00")
            except UsageError:
                pass
            else:
                raise AssertionError("a failed parser accepted more input") from None
            return packets + e.packets, e.reason_code, True, parser.protocol_level, 0
        assert not parser.failed, "failed without an error"
        assert parser.pending_bytes <= min(limit, fed), ("held bytes", parser.pending_bytes,
                                                         limit, fed)
        if lvl or level is not None or role == "client":
            assert parser.protocol_level == (lvl or level), ("level moved", lvl,
                                                             parser.protocol_level)
    return packets, None, False, parser.protocol_level, parser.pending_bytes


def _walk(stream: bytes) -> tuple[int, int]:
    """(complete packets, their bytes) at the start of ``stream``, by fixed headers alone."""
    pos = n = 0
    size = len(stream)
    while pos + 2 <= size:
        length = shift = 0
        q = pos + 1
        while True:
            if q >= size:
                return n, pos
            b = stream[q]
            length |= (b & 0x7F) << shift
            q += 1
            shift += 7
            if b < 0x80 or shift == 28:
                break
        if q + length > size:
            break
        pos = q + length
        n += 1
    return n, pos


def _round_trip(packets: list, role: str, level: int | None, final_level: int) -> None:
    """Encode the packets back to back and parse them again in one feed (one parser: a
    parser per packet would cost more than the rest of the check)."""
    try:
        raw = b"".join(ext.encode(p, final_level or p.protocol_level) for p in packets)
    except UsageError as e:
        raise AssertionError(f"a decoded packet is not encodable at level {final_level}: "
                             f"{packets!r}") from e
    parser = ext.MqttParser(P.MAX_REMAINING_LENGTH, role, level)
    again = parser.feed(raw)
    assert again == packets, ("round trip changed the packets", packets, again)
    assert parser.pending_bytes == 0
