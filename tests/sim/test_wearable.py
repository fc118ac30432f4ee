"""ScenarioWearable: frames decode cleanly, commands are answered, scenarios match the truth."""

from __future__ import annotations

import numpy as np
import pytest

from vitalcore import protocol as P
from vitalcore.codec import FrameDecoder
from vitalcore.errors import UsageError
from vitalcore.sim.wearable import ACK_DETAIL_STOPPED, CUFF_FS, ScenarioWearable

START = 1_764_115_200_000_000
DEV = 0x5600_0001


def wearable(**kw) -> ScenarioWearable:
    kw.setdefault("ecg_fs", 256)
    kw.setdefault("signal_s", 10)
    return ScenarioWearable(device_id=DEV, start_us=START, **kw)


def run_ticks(w: ScenarioWearable, n: int):
    """Decode n ticks; return the batch (asserting no rejects) and per-tick frame counts."""
    dec = FrameDecoder()
    counts = []
    for _ in range(n):
        frames = w.next_tick()
        counts.append(len(frames))
        dec.feed(b"".join(frames), DEV)
    batch = dec.take()
    assert not batch.rejects.any(), batch.rejects
    return batch, counts


def assert_contiguous(batch) -> None:
    f = batch.tables["frames"]
    for sid in set(zip(f["frame_type"].tolist(), f["channel"].tolist(), strict=True)):
        m = (f["frame_type"] == sid[0]) & (f["channel"] == sid[1])
        seq = f["seq"][m].astype(np.int64)
        assert (np.diff(seq) == 1).all(), sid


def test_start_nibp_measures_within_5_mmhg_and_acks_in_order():
    w = wearable(nibp_sys=132, nibp_dia=78, nibp_deflate_mmhg_s=5.0, hr_bpm=64)
    w.next_tick()
    w.command(41, P.CommandKind.START_NIBP)
    assert w.measuring
    batch, _ = run_ticks(w, 4 * 40)
    assert not w.measuring
    acks = batch.tables["acks"]
    assert acks["command_id"].tolist() == [41, 41]
    assert acks["status"].tolist() == [P.AckStatus.ACCEPTED, P.AckStatus.COMPLETED]
    wf = batch.tables["waveforms"]
    cuff = wf["frame_type"] == P.FrameType.CUFF
    assert set(wf["fs_hz"][cuff].tolist()) == {CUFF_FS}
    n_cuff = int(wf["n_samples"][cuff].sum())
    assert 15 * CUFF_FS < n_cuff < 35 * CUFF_FS  # (132+30 - (78-30)) / 5 + 2 s = 24.8 s
    num = batch.tables["numerics"]
    got = {int(c): float(v) for c, v in zip(num["code"], num["value"], strict=True)
           if c in (P.NumericCode.NIBP_SYS, P.NumericCode.NIBP_DIA, P.NumericCode.NIBP_MAP)}
    assert abs(got[P.NumericCode.NIBP_SYS] - 132) <= 5
    assert abs(got[P.NumericCode.NIBP_DIA] - 78) <= 5
    assert got[P.NumericCode.NIBP_DIA] < got[P.NumericCode.NIBP_MAP] < got[P.NumericCode.NIBP_SYS]
    # the NIBP numerics frame precedes the COMPLETED ack (protocol.md §7)
    frames = batch.tables["frames"]
    nibp_frame = num["frame"][num["code"] == P.NumericCode.NIBP_SYS][0]
    assert nibp_frame < acks["frame"][1]
    assert frames["ts_us"][nibp_frame] <= frames["ts_us"][acks["frame"][1]]
    assert_contiguous(batch)


def test_busy_stop_identify_and_unsupported():
    w = wearable()
    w.command(1, P.CommandKind.START_NIBP)
    w.command(2, P.CommandKind.START_NIBP)
    w.command(3, P.CommandKind.STOP_NIBP)
    w.command(4, P.CommandKind.IDENTIFY, 5)
    w.command(5, P.CommandKind.SET_TIME, 1_700_000_000)
    w.command(6, 0x7F)
    batch, _ = run_ticks(w, 2)
    acks = batch.tables["acks"]
    S = P.AckStatus
    assert list(zip(acks["command_id"].tolist(), acks["status"].tolist(), strict=True)) == [
        (1, S.ACCEPTED), (2, S.BUSY), (1, S.FAILED), (3, S.COMPLETED), (4, S.COMPLETED),
        (5, S.UNSUPPORTED), (6, S.UNSUPPORTED)]
    assert acks["detail"][2] == ACK_DETAIL_STOPPED
    assert not w.measuring
    assert not (batch.tables["waveforms"]["frame_type"] == P.FrameType.CUFF).any()


def test_leads_off_episode_matches_truth():
    w = wearable(leads_off_s=(2.0, 4.0), leads_off_bitmap=0b0101)
    batch, counts = run_ticks(w, 4 * 6)
    wf, samples = batch.tables["waveforms"], batch.samples
    ecg = wf["frame_type"] == P.FrameType.ECG
    for ts, start, n in zip(wf["ts_us"][ecg], wf["sample_start"][ecg], wf["n_samples"][ecg],
                            strict=True):
        chunk = samples[start: start + n]
        if w.leads_off_at(int(ts)):
            assert not chunk.any()
        else:
            assert chunk.any()
    st = batch.tables["status"]
    off = (st["flags"] & P.StatusFlag.LEADS_OFF) != 0
    # status every 10 s (t=0) plus one at each edge of the episode
    assert ((st["ts_us"] - START) // 1000).tolist() == [0, 2000, 4000]
    assert off.tolist() == [False, True, False]
    assert st["leads_off"].tolist() == [0, 0b0101, 0]
    num = batch.tables["numerics"]
    hr = num["code"] == P.NumericCode.HR
    hr_off = np.array([w.leads_off_at(int(t)) for t in num["ts_us"][hr]])
    assert (num["status"][hr][hr_off] == P.NumericStatus.UNAVAILABLE).all()
    assert (num["status"][hr][~hr_off] == P.NumericStatus.VALID).all()
    assert hr_off.any() and (~hr_off).any()
    assert_contiguous(batch)


def test_battery_drain_and_accessory_hours_match_truth():
    w = wearable(battery=35.0, battery_drain_pct_h=3600.0, powered_s=1000)  # 1 %/s
    batch, _ = run_ticks(w, 4 * 31)
    st = batch.tables["status"]
    assert len(st["ts_us"]) == 4  # t = 0, 10, 20, 30 s
    for ts, battery, powered in zip(st["ts_us"], st["battery"], st["powered_s"], strict=True):
        assert battery == w.battery_at(int(ts)) == max(0, 35 - (int(ts) - START) // 1_000_000)
        assert powered == w.powered_at(int(ts))[0]
    acc = batch.tables["accessories"]
    for ts, kind, powered in zip(acc["ts_us"], acc["kind"], acc["powered_s"], strict=True):
        assert powered == w.powered_at(int(ts))[int(kind)]
    assert st["battery"].tolist() == [35, 25, 15, 5]


@pytest.mark.parametrize("kw", [dict(nibp_sys=80, nibp_dia=90), dict(nibp_deflate_mmhg_s=50),
                                dict(leads_off_s=(5.0, 1.0))])
def test_bad_configuration_is_a_usage_error(kw):
    with pytest.raises(UsageError):
        wearable(**kw)
