"""The load generator's templated messages are valid traffic: decode cleanly, in sequence."""

from __future__ import annotations

import asyncio

import numpy as np

from vitalcore import protocol as P
from vitalcore.codec import FrameDecoder
from vitalcore.mqtt import MqttParser, Publish
from vitalcore.server.topics import up_topic
from vitalcore.sim.load import ECG_FS, TICK_US, _Device, tick_templates

DEV = 0x5600_00AB


class _Capture:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> None:
        self.data += b


def test_templated_ticks_decode_with_exact_sequence_and_timestamps():
    async def make():
        return _Device(DEV, "secret", window=10_000)

    dev = asyncio.run(make())
    dev.transport = _Capture()
    templates = tick_templates()
    t0 = P.TS_MIN_US + 10 * TICK_US
    sent = [dev.send_tick(templates, t0) for _ in range(40)]  # 10 s
    assert all(s is not None for s in sent)
    packets = MqttParser(role="server", protocol_level=5).feed(bytes(dev.transport.data))
    assert len(packets) == 40 and all(isinstance(p, Publish) for p in packets)
    assert {p.topic for p in packets} == {up_topic(DEV)} and {p.qos for p in packets} == {1}
    dec = FrameDecoder()
    for p in packets:
        dec.feed(p.payload, DEV)
    batch = dec.take()
    assert not batch.rejects.any()
    assert batch.n_frames == sum(s[0] for s in sent) == 40 * 3 + 10
    wf = batch.tables["waveforms"]
    ecg = wf["frame_type"] == P.FrameType.ECG
    assert wf["seq"][ecg].tolist() == list(range(40))
    assert int(wf["n_samples"][ecg].sum()) == 10 * ECG_FS  # 250 Hz: 62/63 samples alternately
    # timestamps exact to the sample: frame k starts at sample sum(n[:k])
    first = np.concatenate([[0], np.cumsum(wf["n_samples"][ecg])[:-1]])
    assert (wf["ts_us"][ecg] == t0 + first * 1_000_000 // ECG_FS).all()
    for ch in (P.PlethChannel.RED, P.PlethChannel.IR):
        m = (wf["frame_type"] == P.FrameType.PLETH) & (wf["channel"] == ch)
        assert wf["seq"][m].tolist() == list(range(40))
        assert (np.diff(wf["ts_us"][m]) == TICK_US).all()
    num = batch.tables["numerics"]
    assert sorted(set(num["seq"].tolist())) == list(range(10))


def test_full_window_skips_ticks():
    async def make():
        return _Device(DEV, "secret", window=2)

    dev = asyncio.run(make())
    dev.transport = _Capture()
    t = tick_templates()
    assert [dev.send_tick(t, P.TS_MIN_US) is None for _ in range(4)] == [False, False, True, True]
    assert dev.tick == 4  # skipped ticks are not sent later: the device time went on
