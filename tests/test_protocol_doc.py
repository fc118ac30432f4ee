"""docs/protocol.md stays true: its worked hex examples are what the encoders produce,
and its constants are the ones in vitalcore.protocol."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vitalcore import codec
from vitalcore import protocol as P

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
TS = 1_764_115_200_000_000


def doc_hex_blocks() -> list[bytes]:
    blocks = []
    for block in re.findall(r"```\n(0000 .*?)```", DOC.read_text(), re.S):
        data = bytearray()
        for line in block.splitlines():
            m = re.match(r"([0-9a-f]{4})  ((?:[0-9a-f]{2} ?){1,16})", line)
            assert m and int(m.group(1), 16) == len(data), line
            data += bytes.fromhex(m.group(2))
        blocks.append(bytes(data))
    return blocks


def test_worked_examples_match_encoders():
    x = np.array([100, 110, 120, 400, 390], np.int16)
    expected = [
        codec.encode_waveform(P.FrameType.ECG, 0x1234, 7, TS, P.EcgLead.II, x, 250, 2.5),
        codec.encode_numerics(0x1234, 42, TS, [(P.NumericCode.HR, 72.0), (P.NumericCode.SPO2, 97.0)]),
        codec.encode_status(
            0x1234, 3, TS, battery=80, flags=P.StatusFlag.CHARGING, carrier=P.Carrier.LTE,
            rssi=-70, powered_s=1234 * 3600,
            accessories=[(P.AccessoryKind.BATTERY, "BAT-0001", 100 * 3600)],
        ),
        codec.encode_ack(0x1234, 9, TS, 77, P.CommandKind.START_NIBP, P.AckStatus.COMPLETED),
    ]
    assert doc_hex_blocks() == expected
    raw16 = codec.encode_waveform(1, 0x1234, 7, TS, 1, x, 250, 2.5, encoding=P.Encoding.RAW16)
    text = " ".join(DOC.read_text().split())
    assert " ".join(f"{b:02x}" for b in raw16[28:-4]) in text
    assert " ".join(f"{b:02x}" for b in raw16[-4:]) in text


def test_documented_limits_are_the_code_limits():
    text = DOC.read_text()
    assert f"0..{P.MAX_PAYLOAD}" in text and f"1..{P.MAX_SAMPLES}" in text
    assert f"1..{P.MAX_FS_HZ}" in text and f"1..{P.MAX_NUMERICS}" in text
    assert f"0..{P.MAX_ACCESSORIES}" in text and f"{P.MAX_FRAME_SIZE:,}" in text
    for code, (lo, hi) in P.NUMERIC_RANGES.items():
        assert re.search(rf"\| {int(code)} \| {P.NumericCode(code).name}.*\| {lo:g}\.\.{hi:g} \|", text)
