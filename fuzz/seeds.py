"""Write the seed inputs of every fuzz target into a directory (then minimise them).

Seeds come from the encoders and from the worked examples of ``docs/protocol.md``
(hex dumps of §10, JSON lines of §11), each behind a control prefix (see
``fuzzlib.py``). ``python fuzz/run.py --reseed`` writes them and merges them into
``fuzz/corpus/<target>/`` with libFuzzer's ``-merge=1`` (which keeps only inputs that
add coverage).

Usage: ``PYTHONPATH=src:fuzz python fuzz/seeds.py OUTDIR`` (writes OUTDIR/<target>/).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.mqtt import _refcodec as mqtt_ref
from vitalcore.mqtt import packets as M

ROOT = Path(__file__).resolve().parent.parent
TS = 1_764_115_200_000_000
DEV = 0x1234


def protocol_hex_examples(text: str) -> list[bytes]:
    """The frames of the hex dumps in docs/protocol.md §10 (one per code block)."""
    frames = []
    for block in re.findall(r"```\n(0000 .*?)```", text, re.S):
        data = bytearray()
        for line in block.splitlines():
            m = re.match(r"[0-9a-f]{4}  ((?:[0-9a-f]{2} )*[0-9a-f]{2})", line)
            if m:
                data += bytes.fromhex(m.group(1))
        frames.append(bytes(data))
    return frames


def protocol_json_examples(text: str) -> list[bytes]:
    """The JSON objects of docs/protocol.md §11 (one per top-level object)."""
    block = re.search(r"## 11\. JSON form.*?```json\n(.*?)```", text, re.S).group(1)
    docs, depth, start = [], 0, 0
    for i, ch in enumerate(block):
        if ch == "{":
            depth, start = depth + 1, start if depth else i
        elif ch == "}":
            depth -= 1
            if depth == 0:
                docs.append(block[start : i + 1].encode())
    return docs


def frame_seeds(text: str) -> list[bytes]:
    x = (np.cumsum(np.random.default_rng(1).integers(-30, 30, 40)) * 7).astype(np.int16)
    frames = protocol_hex_examples(text) + [
        codec.encode_waveform(1, DEV, 1, TS, 1, x, 250, 2.5, 0.0, 1),
        codec.encode_waveform(1, DEV, 2, TS, 11, x[:5], 500, 2.5, -3.0, 0),
        codec.encode_waveform(2, DEV, 3, TS, 1, [0, 300, -300, 32767, -32768], 100, 1.0),
        codec.encode_waveform(3, DEV, 4, TS, 0, [1800, 1795], 100, 0.1),
        codec.encode_numerics(DEV, 5, TS, [(c, lo, s) for c, (lo, _) in P.NUMERIC_RANGES.items()
                                           for s in (0,)] + [(250, 1.0, 0), (3, 0.0, 2)]),
        codec.encode_status(DEV, 6, TS, battery=80, flags=1, carrier=2, rssi=-70,
                            accessories=[(2, "BAT-0001", 360000), (1, "L" * 16, 1)]),
        codec.encode_ack(DEV, 7, TS, 77, 1, 1, 9),
        codec.encode_command(DEV, 8, TS, 78, 3, 900),
    ]
    seeds = [b"\0\0" + f for f in frames]
    seeds.append(b"\x01\x00" + b"".join(frames[:4]))  # several frames, CRCs repaired
    seeds.append(b"\x06\x07" + b"junkV" + frames[1] + b"VC\x02" + frames[2] + b"V")
    # a newer minor version with bytes appended to the payload (CRC repaired by flag 1)
    newer = bytearray(frames[-1])
    newer[3] = 1
    newer[6] += 4
    seeds.append(b"\x01\x00" + bytes(newer[:-4]) + b"\0\0\0\0" + bytes(newer[-4:]))
    return seeds


def mqtt_seeds() -> list[bytes]:
    seeds = []
    for level, setup_server, setup_client in ((4, 1, 3), (5, 2, 4)):
        v5 = level == 5
        props = M.Properties(user_properties=[("k", "v")], content_type="c") if v5 else None
        to_server = [
            M.Connect(level, "dev-000012ab", True, 60, "00000000000012ab", b"secret",
                      M.Will("vc/v1/dev/00000000000012ab/up", b"bye", 1, False), None),
            M.Publish("vc/v1/dev/00000000000012ab/up", b"VC\x01\x00", 1, False, False, 7),
            M.Subscribe(9, [M.Subscription("vc/v1/dev/00000000000012ab/cmd", 1)]),
            M.Unsubscribe(10, ["a/+/#"]),
            M.PubRec(3), M.PubRel(3), M.PubComp(3), M.PingReq(), M.Disconnect(),
        ]
        to_client = [
            M.ConnAck(False, 0, M.Properties(receive_maximum=20) if v5 else None),
            M.Publish("vc/v1/dev/00000000000012ab/cmd", b"x", 2, True, True, 65535, props),
            M.PubAck(7, 0x10 if v5 else 0), M.SubAck(9, [1, 0x80]),
            M.UnsubAck(10, [0] if v5 else []), M.PingResp(),
        ]
        if v5:
            to_server.append(M.Auth(0x18, M.Properties(authentication_method="SCRAM")))
        connect = mqtt_ref.encode(to_server[0], level)
        seeds.append(bytes([0x40 | (0x80 if v5 else 0), 0]))  # CONNECT prepended, nothing else
        seeds.append(bytes([0, 3]) + b"".join(mqtt_ref.encode(p, level) for p in to_server))
        seeds.append(bytes([setup_server, 0]) + b"".join(mqtt_ref.encode(p, level)
                                                       for p in to_server[1:]))
        seeds.append(bytes([setup_client, 5]) + b"".join(mqtt_ref.encode(p, level)
                                                       for p in to_client))
        seeds.append(bytes([setup_client | 0x20, 0]) + mqtt_ref.encode(to_client[1], level))
        seeds.append(bytes([0, 0]) + connect[:-1])
    return seeds


def json_seeds(text: str) -> list[bytes]:
    docs = protocol_json_examples(text)
    return [b"\0\0" + d for d in docs] + [b"\x01\x00[" + b",".join(docs) + b"]"]


def write(outdir: Path) -> dict[str, int]:
    text = (ROOT / "docs" / "protocol.md").read_text()
    made = {"frames": frame_seeds(text), "mqtt": mqtt_seeds(), "json": json_seeds(text)}
    for target, seeds in made.items():
        d = outdir / target
        d.mkdir(parents=True, exist_ok=True)
        for s in seeds:
            (d / hashlib.sha1(s).hexdigest()).write_bytes(s)
    return {t: len(s) for t, s in made.items()}


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))
