from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vitalcore import protocol as P
from vitalcore.codec import FrameDecoder, encode_waveform
from vitalcore.errors import UsageError
from vitalcore.live import LiveFanout, StreamSpec, decode_message

T0 = 1_764_115_200_000_000
ECG, PLETH = P.FrameType.ECG, P.FrameType.PLETH


def frames(dev, ftype, chan, fs, signal, t0=T0, frame_s=0.25, gain=2.0, seq0=0):
    """Wire frames of ``signal`` cut in 250 ms frames (62/63 samples at 250 Hz)."""
    out, i, k = [], 0, 0
    while i < len(signal):
        n = round((k + 1) * frame_s * fs) - round(k * frame_s * fs)
        ts = t0 + round(i * 1e6 / fs)
        out.append(encode_waveform(ftype, dev, seq0 + k, ts, chan, signal[i:i + n], fs, gain))
        i += n
        k += 1
    return out


def batches(frame_list, per_batch=3):
    dec = FrameDecoder()
    for i in range(0, len(frame_list), per_batch):
        dec.feed(b"".join(frame_list[i:i + per_batch]))
        yield dec.take()


def collect(sub):
    out = []
    while (m := sub.get_nowait()) is not None:
        out.extend(decode_message(m))
    return out


def test_decimated_output_is_the_boxcar_mean_seamless_across_frames_and_flushes():
    rng = np.random.default_rng(1)
    ecg = rng.integers(-2000, 2000, 2500).astype(np.int16)  # 10 s at 250 Hz
    f = LiveFanout([StreamSpec(ECG, P.EcgLead.II, 2)])
    sub = f.subscribe([5])
    got = []
    for b in batches(frames(5, ECG, P.EcgLead.II, 250, ecg)):
        f.on_batch(b)
        f.flush()
        got.extend(collect(sub))
    assert all(p.fs_hz == 125 and p.gain == 2.0 and p.device_id == 5 for p in got)
    y = np.concatenate([p.samples for p in got])
    np.testing.assert_array_equal(y, np.rint(ecg.reshape(-1, 2).mean(1)).astype(np.int16))
    # each packet starts where the previous ended (8000 µs per output sample)
    for a, b in zip(got, got[1:], strict=False):
        assert b.t0_us == a.t0_us + len(a.samples) * 8000
    assert got[0].t0_us == T0


def test_only_subscribed_devices_and_streams_are_forwarded():
    f = LiveFanout()
    sub1, sub2 = f.subscribe([1]), f.subscribe([1, 2])
    sig = np.arange(100, dtype=np.int16)
    fl = (frames(1, PLETH, P.PlethChannel.IR, 100, sig) + frames(2, PLETH, P.PlethChannel.IR,
                                                                 100, sig)
          + frames(3, PLETH, P.PlethChannel.IR, 100, sig)  # nobody's
          + frames(1, PLETH, P.PlethChannel.RED, 100, sig))  # not a fanned-out channel
    for b in batches(fl, 100):
        f.on_batch(b)
    assert f.flush() > 0
    assert {p.device_id for p in collect(sub1)} == {1}
    p2 = collect(sub2)
    assert {p.device_id for p in p2} == {1, 2}
    assert all(p.channel == P.PlethChannel.IR and p.fs_hz == 50 for p in p2)
    sub2.close()
    assert f.subscribe([9]).devices == frozenset({9})
    for b in batches(frames(2, PLETH, P.PlethChannel.IR, 100, sig, t0=T0 + 10**6), 100):
        f.on_batch(b)  # device 2 has no subscriber left: not even kept
    assert not any(k[0] == 2 for k in f._state)


def test_frame_type_filter_per_subscription():
    f = LiveFanout()
    ecg_only, both = f.subscribe([1], frame_types=[ECG]), f.subscribe([1])
    fl = (frames(1, ECG, P.EcgLead.II, 250, np.zeros(250, np.int16))
          + frames(1, PLETH, P.PlethChannel.IR, 100, np.zeros(100, np.int16)))
    for b in batches(fl, 100):
        f.on_batch(b)
    f.flush()
    assert {p.frame_type for p in collect(ecg_only)} == {ECG}
    assert {p.frame_type for p in collect(both)} == {ECG, PLETH}
    with pytest.raises(UsageError):
        f.subscribe([1], frame_types=[P.FrameType.CUFF])


def test_set_devices_moves_a_subscription():
    f = LiveFanout()
    sub = f.subscribe([1])
    sig = np.zeros(100, np.int16)

    def feed(t0):
        fl = [fr for d in (1, 2) for fr in frames(d, PLETH, P.PlethChannel.IR, 100, sig, t0=t0)]
        for b in batches(fl, 100):
            f.on_batch(b)
        f.flush()
        return {p.device_id for p in collect(sub)}

    assert feed(T0) == {1}
    sub.set_devices([2])
    assert feed(T0 + 10**6) == {2}
    assert not any(k[0] == 1 for k in f._state)  # nobody wants device 1 any more


def test_time_gap_starts_a_new_segment_with_its_own_timestamp():
    f = LiveFanout([StreamSpec(ECG, P.EcgLead.II, 2)])
    sub = f.subscribe([1])
    a = np.ones(250, np.int16)
    fl = frames(1, ECG, P.EcgLead.II, 250, a) + frames(1, ECG, P.EcgLead.II, 250, a * 3,
                                                       t0=T0 + 5_000_000, seq0=10)
    for b in batches(fl, 100):
        f.on_batch(b)
    f.flush()
    p = collect(sub)
    assert [x.t0_us for x in p] == [T0, T0 + 5_000_000]
    assert set(p[0].samples.tolist()) == {1} and set(p[1].samples.tolist()) == {3}


def test_pending_is_bounded_and_slow_consumer_loses_oldest():
    f = LiveFanout([StreamSpec(ECG, P.EcgLead.II, 1)], max_pending_s=1.0)
    sub = f.subscribe([1], maxsize=2)
    sig = np.arange(2500, dtype=np.int16)  # 10 s, never flushed in between
    for b in batches(frames(1, ECG, P.EcgLead.II, 250, sig), 100):
        f.on_batch(b)
    f.flush()
    (p,) = collect(sub)
    assert len(p.samples) == 250  # the newest second only
    np.testing.assert_array_equal(p.samples, sig[-250:])
    assert p.t0_us == T0 + 9_000_000
    assert f.counters["dropped_samples"] == 2250
    for k in range(4):
        for b in batches(frames(1, ECG, P.EcgLead.II, 250, sig[:25], t0=T0 + (11 + k) * 10**6),
                         100):
            f.on_batch(b)
        f.flush()
    assert sub.dropped == 2 and len(collect(sub)) == 2


def test_subscription_get_waits_and_returns_none_after_close():
    async def main():
        f = LiveFanout()
        sub = f.subscribe([1])
        f.start(0.05)
        for b in batches(frames(1, ECG, P.EcgLead.II, 250, np.zeros(63, np.int16)), 10):
            f.on_batch(b)
        msg = await asyncio.wait_for(sub.get(), 2)
        assert decode_message(msg)[0].device_id == 1
        waiter = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0.01)
        f.close()
        assert await asyncio.wait_for(waiter, 2) is None
        assert sub.bytes_out == len(msg)

    asyncio.run(main())


@pytest.mark.parametrize("kw", [dict(streams=[]), dict(streams=[StreamSpec(0x10, 0, 1)]),
                                dict(streams=[StreamSpec(ECG, 1, 0)]), dict(max_pending_s=0)])
def test_bad_configuration(kw):
    with pytest.raises(UsageError):
        LiveFanout(**kw)


def test_bad_subscription_arguments():
    f = LiveFanout()
    with pytest.raises(UsageError):
        f.subscribe([0])
    with pytest.raises(UsageError):
        f.subscribe([1], maxsize=0)
