"""Throughput of the MQTT packet codec, against baselines measured in the same run.

Stream: what one broker connection reads from devices -- PUBLISH QoS 1 with 300-byte
payloads on ``vc/v1/dev/<id>/up``, each followed by a PUBACK (the device acknowledging
a command), fed in 64 KiB chunks as a transport reads them. Two topic patterns:
``one-device`` (a device connection: the same topic every time) and ``gateway``
(a bridge connection: 1000 device topics round-robin).

Compared, each decoding or encoding the very same packets:

- ``ext``: ``vitalcore._ext.mqttcodec`` (Cython).
- ``ref``: ``vitalcore.mqtt._refcodec`` (pure Python twin).
- ``gmqtt``: gmqtt's own framing (``MQTTProtocol._read_packet``) and PUBLISH body parser
  (``MqttPackageHandler._handle_publish_packet``), driven through a stub handler since
  gmqtt has no standalone parser; PUBACK bodies with the ``struct.unpack`` gmqtt uses.
  Encoding: gmqtt's ``PublishPacket.build_package`` and ``CommandWithMidPacket``.
  gmqtt validates almost nothing (UTF-8, flags, packet ids), so it does less work.

Also the subscription tree: ``SubscriptionTree.match`` + ``match_shared`` over 20 000
device subscriptions plus ward wildcards, with and without its per-topic result cache.

Run: ``PYTHONPATH=src python benchmarks/bench_mqtt_codec.py [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import struct
import time
import types

from vitalcore._ext import mqttcodec as ext
from vitalcore.mqtt import _refcodec as ref
from vitalcore.mqtt import packets as P
from vitalcore.mqtt.topics import SubscriptionTree

CHUNK = 65536
PAYLOAD = bytes(range(256)) + bytes(44)  # 300 bytes


def topics(pattern: str, n: int) -> list[str]:
    if pattern == "one-device":
        return ["vc/v1/dev/000012ab/up"] * n
    return [f"vc/v1/dev/{i % 1000:08x}/up" for i in range(n)]


def build_stream(pattern: str, n: int, level: int) -> tuple[bytes, list[str]]:
    tps = topics(pattern, n)
    parts = [ref.encode(P.Connect(level, "bench", True, 60), level)]
    for i, t in enumerate(tps):
        pid = i % 65535 + 1
        parts.append(ext.encode_publish(t, PAYLOAD, 1, packet_id=pid, protocol_level=level))
        parts.append(ext.encode_puback(pid, protocol_level=level))
    return b"".join(parts), tps


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(cases: list[tuple[str, object, object]], repeat: int) -> dict[str, float]:
    """Best time of each ``(name, fn, arg)``, the implementations taking turns so that
    load from other processes on the machine hits all of them alike."""
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(repeat):
        for name, fn, arg in cases:
            t0 = time.perf_counter()
            fn(arg)  # type: ignore[operator]
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


# ------------------------------------------------------------------------- decoders
def decode_with(codec):
    def run(pieces: list[bytes]) -> int:
        parser = codec.MqttParser()
        n = 0
        for piece in pieces:
            n += len(parser.feed(piece))
        return n

    return run


def gmqtt_decoder(level: int):
    """gmqtt's framing + PUBLISH parser, without its network side effects."""
    from gmqtt.mqtt.handler import MqttPackageHandler
    from gmqtt.mqtt.protocol import MQTTProtocol

    logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
    out: list = []

    class Handler:
        _parse_properties = MqttPackageHandler._parse_properties
        _handle_publish_packet = MqttPackageHandler._handle_publish_packet
        _connection_state = types.SimpleNamespace(protocol_version=level)
        _logger = logging.getLogger("gmqtt.bench")
        _server_topics_aliases: dict = {}

        def _handle_qos_1_publish_packet(self, mid, payload, topic, properties):
            out.append((topic, payload, mid, properties))

    handler = Handler()
    packages: list = []
    proto = types.SimpleNamespace(_connection=types.SimpleNamespace(put_package=packages.append))

    def run(pieces: list[bytes]) -> int:
        out.clear()
        buf = b""
        n = 0
        for piece in pieces:
            buf += piece  # gmqtt's _read_loop
            parsed = MQTTProtocol._read_packet(proto, buf)
            buf = buf[parsed:]
            for pkg in packages:
                cmd = pkg.cmd & 0xF0
                if cmd == 0x30:
                    handler._handle_publish_packet(pkg.cmd, pkg.data)
                elif cmd == 0x40:
                    (mid,) = struct.unpack("!H", pkg.data[:2])  # as gmqtt's PUBACK handler
                n += 1
            packages.clear()
        return n

    return run


# ------------------------------------------------------------------------- encoders
def encode_with(codec, level: int):
    def run(tps: list[str]) -> int:
        enc_pub, enc_ack = codec.encode_publish, codec.encode_puback
        total = 0
        for i, t in enumerate(tps):
            pid = i % 65535 + 1
            total += len(enc_pub(t, PAYLOAD, 1, packet_id=pid, protocol_level=level))
            total += len(enc_ack(pid, protocol_level=level))
        return total

    return run


def gmqtt_encoder(level: int):
    from gmqtt.client import Message
    from gmqtt.mqtt.constants import MQTTCommands
    from gmqtt.mqtt.package import CommandWithMidPacket, PublishPacket

    class Ids:
        n = 0

        def next_id(self):
            self.n = self.n % 65535 + 1
            return self.n

    protocol = types.SimpleNamespace(proto_ver=level, id_generator=Ids())

    def run(tps: list[str]) -> int:
        total = 0
        for t in tps:
            msg = Message(t, PAYLOAD, qos=1)
            mid, pkt = PublishPacket.build_package(msg, protocol)
            total += len(pkt)
            total += len(CommandWithMidPacket.build_package(MQTTCommands.PUBACK, mid, False,
                                                            proto_ver=level))
        return total

    return run


# -------------------------------------------------------------------------- reporting
def report(name: str, rows: list[tuple[str, float, int, int]]) -> None:
    """rows: (implementation, seconds, packets, bytes)."""
    base = {impl: n / s for impl, s, n, _ in rows}
    print(f"\n{name}")
    print(f"  {'impl':8} {'packets/s':>12} {'MB/s':>9}   ratio ext/impl")
    for impl, s, n, nbytes in rows:
        ratio = base["ext"] / base[impl]
        print(f"  {impl:8} {n / s:12,.0f} {nbytes / s / 1e6:9.1f}   {ratio:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer packets (CI smoke run)")
    args = ap.parse_args()
    n_fast, n_slow, repeat = (5_000, 1_000, 2) if args.quick else (50_000, 5_000, 5)
    print(f"MQTT codec benchmark: PUBLISH QoS 1, {len(PAYLOAD)}-byte payload, each with a "
          f"PUBACK; {CHUNK // 1024} KiB chunks; best of {repeat}")
    for level in (4, 5):
        version = "5" if level == 5 else "3.1.1"
        for pattern in ("one-device", "gateway"):
            cases, sizes = [], {}
            for impl, fn, n in (("ext", decode_with(ext), n_fast),
                                ("ref", decode_with(ref), n_slow),
                                ("gmqtt", gmqtt_decoder(level), n_fast)):
                data, _ = build_stream(pattern, n, level)
                pieces = chunks(data)
                count = fn(pieces)
                assert count == 2 * n + 1, (impl, count)
                cases.append((impl, fn, pieces))
                sizes[impl] = (count, len(data))
            best = interleaved(cases, repeat)
            report(f"decode  MQTT {version}  {pattern}",
                   [(impl, best[impl], *sizes[impl]) for impl in best])
        cases, sizes = [], {}
        for impl, fn, n in (("ext", encode_with(ext, level), n_fast),
                            ("ref", encode_with(ref, level), n_slow),
                            ("gmqtt", gmqtt_encoder(level), n_fast)):
            tps = topics("gateway", n)
            sizes[impl] = (2 * n, fn(tps))
            cases.append((impl, fn, tps))
        best = interleaved(cases, repeat)
        report(f"encode  MQTT {version}  PUBLISH + PUBACK",
               [(impl, best[impl], *sizes[impl]) for impl in best])

    # packet object construction share of decoding (msgspec Struct from Python)
    t = "vc/v1/dev/000012ab/up"
    k = 200_000
    s = best_of(lambda: [P.Publish(t, PAYLOAD, 1, False, False, 7, None) for _ in range(k)], 3)
    print(f"\nPublish Struct construction from Python: {k / s:,.0f} /s "
          f"({s / k * 1e9:.0f} ns each; an upper bound of its share of decoding)")

    for label, cache_size in (("uncached", 0), ("cached", 65536)):
        tree = SubscriptionTree(cache_size=cache_size)
        for i in range(10_000):
            tree.add(f"vc/v1/dev/{i:08x}/cmd", f"dev-{i}", 1)
            tree.add(f"vc/v1/dev/{i:08x}/up", f"archive-{i % 8}", 1)
        for w in range(20):
            tree.add("vc/v1/dev/+/up", f"ward-{w}", 0)
        tree.add("vc/#", "audit", 0)
        tree.add("$share/dash/vc/v1/dev/+/up", "dash-1", 0)
        names = [f"vc/v1/dev/{i % 10_000:08x}/up" for i in range(50_000)]
        s = best_of(lambda t=tree, ns=names: [(t.match(x), t.match_shared(x)) for x in ns], 3)
        print(f"SubscriptionTree match + match_shared, {len(tree):,} subscriptions, 22+1 "
              f"subscribers per topic, {label}: {len(names) / s:,.0f} topics/s "
              f"({s / len(names) * 1e6:.2f} µs each)")

if __name__ == "__main__":
    main()
