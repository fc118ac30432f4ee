"""The quick-start job end to end: a real Server and Store, real gmqtt devices, 4 devices.

One run (~30 s: the BP measurement deflates at 5 mmHg/s) shared by the assertions:
frames stored for every device with contiguous sequence numbers on every stream (also
for the device whose link is cut for 4 s), the ward-wide BP command answered within
5 mmHg of each device's truth, the leads-off episode stored as it happened, and a clean
shutdown (everything acknowledged, every device disconnected normally, the store
reopens with the same data).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from vitalcore import protocol as P

DEVICES = 4
ALL_TIME = (0, 2**62)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from vitalcore.sim.run import run_job

    logging.getLogger("gmqtt").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    summary = asyncio.run(asyncio.wait_for(run_job(
        DEVICES, str(root), duration_s=45.0, bp_after_s=1.0, port=0, status_every_s=5.0,
        nibp_deflate_mmhg_s=5.0, log2_n=10, stop_when_bp_done=True, out=lines.append,
        link_drop_at_s=4.0, link_drop_for_s=4.0, leads_off_s=(3.0, 8.0),
    ), 90))
    return summary, root, lines


@pytest.fixture(scope="module")
def reopened(job):
    from vitalcore.storage.store import Store

    _, root, _ = job
    store = Store(root / "store", flush_interval_s=0)
    yield store
    store.close()


def test_clean_shutdown_everything_acknowledged(job):
    s, _, lines = job
    w = s.ward
    assert w["messages_sent"] > DEVICES * 4 * 20 and w["messages_sent"] == w["messages_acked"]
    assert w["device_errors"] == w["connect_failures"] == w["bad_commands"] == 0
    assert w["frames_sent"] == s.store["frames"]  # every first transmission stored once
    assert sum(s.store["decoder"]["rejected"].values()) == 0
    assert s.server.get("protocol_errors", 0) == 0
    assert s.server["disconnects_normal"] == DEVICES  # the last connection of each device
    assert s.server["connections"] == 0  # every device disconnected before server.stop()
    assert any(line.startswith("[") and "online" in line for line in lines)  # status lines
    assert np.isfinite(s.latency_p50_ms) and s.latency_p50_ms < s.latency_p99_ms < 2000


def test_link_drop_reconnects_and_forwards_the_backlog(job):
    s, _, _ = job
    w = s.ward
    assert w["link_drops"] >= 1 and w["reconnects"] >= 1
    assert w["backlogged_frames"] >= 4 * 4 * 3  # >= 3 s of ticks held while offline
    assert w["backlog_dropped_frames"] == 0
    assert len(s.link_drops) == 1


def test_bp_command_answered_within_5_mmhg(job):
    s, _, _ = job
    assert len(s.bp) == DEVICES
    for dev, r in s.bp.items():
        assert r.ok, (dev, r.failed)
        assert abs(r.sys - r.true_sys) <= 5 and abs(r.dia - r.true_dia) <= 5, r
        assert r.dia < r.map < r.sys


def _contiguous(seq: np.ndarray) -> bool:
    seq = np.sort(seq.astype(np.int64))
    return len(seq) > 0 and seq[0] == 0 and bool((np.diff(seq) == 1).all())


def test_stored_frames_have_no_gap_on_any_stream(job, reopened):
    s, _, _ = job
    for dev in s.devices:
        wf = reopened.read_waveforms(dev, *ALL_TIME).to_pydict()
        ftype, ch, seq = (np.asarray(wf[k]) for k in ("frame_type", "channel", "seq"))
        streams = set(zip(ftype.tolist(), ch.tolist(), strict=True))
        assert {(P.FrameType.ECG, P.EcgLead.II), (P.FrameType.PLETH, 0), (P.FrameType.PLETH, 1),
                (P.FrameType.CUFF, 0)} <= streams
        for ft, c in streams:
            m = (ftype == ft) & (ch == c)
            assert _contiguous(seq[m]), (hex(dev), ft, c)
        assert (np.asarray(wf["ts_us"])[ftype == P.FrameType.ECG].size
                >= 4 * (s.seconds - 6))  # ~every 250 ms of the run
        num = reopened.read_numerics(dev, *ALL_TIME).to_pydict()
        assert _contiguous(np.unique(np.asarray(num["seq"])))
        st = reopened.read_status(dev, *ALL_TIME).to_pydict()
        assert _contiguous(np.asarray(st["seq"]))


def test_leads_off_episode_stored_as_it_happened(job, reopened):
    s, _, _ = job
    w = list(s.devices.values())[1]
    st = reopened.read_status(w.device_id, *ALL_TIME).to_pydict()
    flags = np.asarray(st["flags"])
    ts = np.asarray(st["ts_us"])
    off = (flags & P.StatusFlag.LEADS_OFF) != 0
    assert off.any() and (~off).any()
    for t, o, bitmap in zip(ts, off, st["leads_off"], strict=True):
        assert o == w.leads_off_at(int(t))
        assert bitmap == (w.leads_off_bitmap if o else 0)
    t_ecg, ecg = reopened.read_samples(w.device_id, P.FrameType.ECG, P.EcgLead.II, *ALL_TIME)
    during = np.array([w.leads_off_at(int(t)) for t in t_ecg[::64]])
    assert during.any()
    assert not ecg[::64][during].any()  # flat during the episode
    assert ecg[::64][~during].any()


def test_alarms_leads_off_raised_and_ended_no_offline_alarm_for_a_short_link_drop(job):
    """The job's alarm engine: the leads-off episode raises and ends its alarm (printed and
    in the durable alarm log); the 4 s link drop is within the reconnect grace period, so
    no device.offline alarm."""
    from vitalcore.alarms import AlarmLog

    s, root, lines = job
    leads_dev = list(s.devices)[1]
    assert ("raised", "leads_off", leads_dev) in s.alarms
    assert ("ended", "leads_off", leads_dev) in s.alarms
    assert not [a for a in s.alarms if a[1] == "device.offline"]
    assert any("alarm raised: medium leads_off" in line for line in lines)
    log = AlarmLog(root / "alarms")
    try:
        t = log.read(0, 2**62, device_id=leads_dev).to_pydict()
    finally:
        log.close()
    assert "leads_off" in t["code"]
