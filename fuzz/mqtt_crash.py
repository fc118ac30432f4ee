"""Crash-only target of the Cython MQTT codec: the cheapest fuzz mode.

:func:`check` is the fuzz target of ``fuzz_mqtt.py --crash`` (``VC_FUZZ_CRASH=1``): the
standard libFuzzer harness. It drives ``vitalcore._ext.mqttcodec`` alone on the input,
with the control prefix of :mod:`fuzzlib` and the parser setups of
:mod:`mqtt_invariants` (role and level, ``max_packet_size``, a prepended CONNECT): the
parser over the chunks. The encoder is left to the fast mode: encoding the decoded
packets cost more than the parsing itself (~40 of ~70 µs per corpus input, without
coverage hooks). The API documents two exceptions here, both let through:

- ``MqttProtocolError`` from ``feed`` (the peer broke MQTT);
- ``UsageError`` from ``feed`` once the parser has failed (it refuses further input).

Anything else -- any other exception from ``feed``, ``UsageError`` from a parser that
has not failed -- goes out of :func:`check` as it is and libFuzzer reports it as a
crash. Besides that it
checks two O(1) facts of the documented error path:

1. the parser is ``failed`` exactly when ``feed`` raised ``MqttProtocolError``;
2. a failed parser refuses more input (UsageError).

What it cannot see: wrong packets, lost or invented bytes, split dependence, bounds on
what the parser holds, packets the encoder cannot encode (the fast mode,
:mod:`mqtt_fast`, checks those), disagreement with the specification (the twin mode,
:mod:`mqtt_invariants`).
"""

from __future__ import annotations

from fuzzlib import chunks, control
from mqtt_fast import CONNECT
from mqtt_invariants import MAX_SIZES, SETUPS

from vitalcore._ext import mqttcodec as ext
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttProtocolError


def check(data: bytes) -> None:
    flags, seed, payload = control(data)
    role, level = SETUPS[flags & 7]
    if flags & 0x40 and role == "server" and level is None:
        payload = CONNECT[5 if flags & 0x80 else 4] + payload
    parser = ext.MqttParser(MAX_SIZES[(flags >> 3) & 7], role, level)
    for chunk in chunks(payload, seed):
        try:
            parser.feed(chunk)
        except MqttProtocolError:
            assert parser.failed, "MqttProtocolError without the parser failing"
            try:
                parser.feed(b"\xc0\x00")
            except UsageError:
                break
            raise AssertionError("a failed parser accepted more input") from None
        assert not parser.failed, "the parser failed without an error"
