"""Device and server clocks jumping back and forward while frames flow."""

from __future__ import annotations

from faults_harness import report
from faults_scenarios import run_clock_jumps


def test_clock_jumps_lose_nothing_and_keep_device_time(tmp_path, run):
    result = run(run_clock_jumps(tmp_path))
    text = report("clock jumps", result)
    f = result.figures
    assert result.verdict.ok, text
    assert f["device_times_kept"], text
    # sequence numbers never went back: no frame may be taken for late, a duplicate
    # or a restart because its clock stepped
    assert (f["duplicates"], f["late"], f["restarts"], f["gaps"]) == (0, 0, 0, 0), text
    assert f["store_flushes"] >= 2, text  # checkpoints were written across the jumps
    assert f["drained"], text


def test_live_latest_follows_a_device_whose_clock_stepped_back():
    from faults_harness import frame

    from vitalcore.buffers import StreamBuffers
    from vitalcore.codec import FrameDecoder

    dev = 0xF30001
    buffers = StreamBuffers(window_s=30.0)
    decoder = FrameDecoder()
    t0 = 1_764_115_200_000_000
    for seq, ts in ((0, t0), (1, t0 + 250_000), (2, t0 + 500_000 - 3_600_000_000)):
        buffers.append(decoder.decode(frame(dev, seq, ts), dev))
    latest = buffers.latest(dev)[1]
    assert latest.ts_us == t0 + 500_000 - 3_600_000_000  # the newest frame's value
    assert latest.value == 62.0  # HR of seq 2
