"""The load generator's templated messages are valid traffic: decode cleanly, in sequence."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vitalcore import protocol as P
from vitalcore.codec import FrameDecoder
from vitalcore.errors import UsageError
from vitalcore.mqtt import MqttParser, Publish
from vitalcore.server.topics import up_topic
from vitalcore.sim.load import (
    ECG_FS,
    SLOTS,
    TICK_US,
    _Device,
    _Fleet,
    message_templates,
    tick_templates,
)

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


def _frames_of(packets: list, device: int) -> list[tuple]:
    dec = FrameDecoder()
    for p in packets:
        dec.feed(p.payload, device)
    batch = dec.take()
    assert not batch.rejects.any()  # every CRC-32C patched in right
    wf, num = batch.tables["waveforms"], batch.tables["numerics"]
    rows = [(int(wf["frame_type"][i]), int(wf["channel"][i]), int(wf["seq"][i]),
             int(wf["ts_us"][i]), int(wf["n_samples"][i])) for i in range(len(wf["seq"]))]
    rows += [(0, int(num["code"][i]), int(num["seq"][i]), int(num["ts_us"][i]), 0)
             for i in range(len(num["seq"]))]
    return sorted(rows)


@pytest.mark.parametrize("batch_ticks", [2, 4])
def test_fleet_batched_messages_hold_the_same_frames_as_one_tick_messages(batch_ticks):
    ids = [DEV, DEV + 1, DEV + 77]
    t0 = P.TS_MIN_US + 40 * TICK_US
    seconds = 3

    async def make():
        return [_Device(d, "secret", window=10_000) for d in ids]

    out = {}
    for bt in (1, batch_ticks):
        devices = asyncio.run(make())
        for d in devices:
            d.transport = _Capture()
        fleet = _Fleet(devices, qos=1, window=10_000, t0_us=t0, batch_ticks=bt)
        for step in range(seconds * 4 // bt * SLOTS):
            fleet.send(step)
        assert fleet.sent == len(ids) * seconds * 4 // bt and fleet.skipped == 0
        assert fleet.frames == len(ids) * seconds * 13
        for d in devices:
            packets = MqttParser(role="server", protocol_level=5).feed(bytes(d.transport.data))
            assert len(packets) == seconds * 4 // bt
            assert {p.topic for p in packets} == {up_topic(d.device_id)}
            assert len({p.packet_id for p in packets}) == len(packets)
            out[bt, d.device_id] = _frames_of(packets, d.device_id)
    for d in ids:  # same frames, sequence numbers and timestamps, whatever the batching
        # 12 waveform frames + 1 numerics frame (2 codes: one row each) per second
        assert out[batch_ticks, d] == out[1, d] and len(out[1, d]) == seconds * 14
    # ... and the same as the one-device reference path
    dev = asyncio.run(make())[0]
    dev.transport = _Capture()
    for _ in range(seconds * 4):
        dev.send_tick(tick_templates(), t0)
    packets = MqttParser(role="server", protocol_level=5).feed(bytes(dev.transport.data))
    assert _frames_of(packets, DEV) == out[batch_ticks, DEV]


def test_message_templates_refuse_a_batching_that_does_not_divide_a_second():
    assert len(message_templates(4)) == 1 and len(message_templates(1)) == 4
    for bad in (0, 3, 8):
        with pytest.raises(UsageError):
            message_templates(bad)


def test_load_ecg_is_usable_for_the_servers_analysis():
    """The load's ECG passes the quality check (no "no usable ECG" alarm for every device
    of a load test) and beats at 60 bpm, across the second boundaries where it repeats."""
    from vitalcore.dsp import detect_qrs
    from vitalcore.dsp.quality import ecg_quality

    batch = FrameDecoder().decode(b"".join(m for m, _ in tick_templates()))
    w = batch["waveforms"]
    rows = np.flatnonzero(w["frame_type"] == P.FrameType.ECG)
    second = np.concatenate([batch.waveform_values(int(r)) for r in rows]) / 1000.0  # mV
    assert second.size == 250
    ecg = np.tile(second, 20)
    assert not np.asarray(ecg_quality(ecg, 250).flags).any()
    beats = np.asarray(detect_qrs(ecg, 250))
    assert len(beats) >= 19 and (np.diff(beats) == 250).all()
