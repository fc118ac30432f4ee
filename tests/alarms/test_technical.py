"""Technical alarms: offline with reconnect grace, battery, status flags, gaps."""

from __future__ import annotations

import threading

import pytest
from alarm_helpers import START, Rig

from vitalcore.alarms.technical import Liveness, TechnicalConfig, status_findings
from vitalcore.errors import ConfigError
from vitalcore.protocol import StatusFlag
from vitalcore.sim.wearable import ScenarioWearable


def test_reconnect_within_grace_raises_nothing(rig):
    a = ScenarioWearable(device_id=31, start_us=START, seed=1)
    rig.run([a], 5)
    rig.engine.device_disconnected(31)
    rig.run([a], 8, skip=lambda d, t: True)   # link down 8 s (< 15 s grace)
    rig.engine.device_connected(31)
    rig.run([a], 20)
    assert not rig.raised("device.offline")


def test_disconnect_beyond_grace_raises_offline_then_ends(rig):
    a = ScenarioWearable(device_id=32, start_us=START, seed=1)
    rig.run([a], 5)
    rig.engine.device_disconnected(32)
    rig.run([a], 20, skip=lambda d, t: True)
    got = rig.raised("device.offline", 32)
    assert len(got) == 1 and "disconnected" in got[0].alarm.message
    assert 15 * 1e6 <= got[0].ts_us - (START + 5e6) <= 17 * 1e6
    rig.run([a], 3)
    assert [e for e in rig.events if e.kind == "ended" and e.alarm.code == "device.offline"]


def test_silent_device_without_transport_event_goes_offline(rig):
    a = ScenarioWearable(device_id=33, start_us=START, seed=1)
    b = ScenarioWearable(device_id=34, start_us=START, seed=2)
    rig.run([a, b], 40, skip=lambda d, t: d == 33 and t >= 5)  # CoAP device goes quiet
    got = rig.raised("device.offline")
    assert [e.alarm.device_id for e in got] == [33] and "no data" in got[0].alarm.message


def test_ecg_gap_raises_data_gap(rig):
    a = ScenarioWearable(device_id=35, start_us=START, seed=1)
    rig.run([a], 30, skip=lambda d, t: 10 <= t < 11.5)
    assert rig.raised("data.gap", 35)
    assert not rig.raised("device.offline")


def test_battery_and_flags():
    cfg = TechnicalConfig()
    codes = lambda b, fl: [f.code for f in status_findings(b, fl, 0, cfg)]  # noqa: E731
    assert codes(50, 0) == []
    assert codes(20, 0) == ["battery.low"]
    assert codes(5, 0) == ["battery.critical"]
    assert codes(5, StatusFlag.EXTERNAL_POWER) == []
    assert codes(255, 0) == []
    assert codes(80, StatusFlag.PROBE_OFF | StatusFlag.LOW_SIGNAL | StatusFlag.CUFF_FAULT) == [
        "probe_off", "signal.poor", "cuff.fault"]


def test_low_battery_from_a_draining_wearable(rig):
    w = ScenarioWearable(device_id=36, start_us=START, seed=1, battery=21.0,
                         battery_drain_pct_h=3600.0)  # 1 %/s
    rig.run([w], 12)
    assert rig.raised("battery.low", 36)


def test_liveness_unit():
    lv = Liveness(TechnicalConfig(offline_after_s=30, reconnect_grace_s=15))
    lv.seen(1, 0.0)
    assert lv.offline(1, 29.0) is None and lv.offline(1, 30.0)
    lv.disconnected(1, 31.0)
    lv.connected(1, 40.0)
    assert lv.offline(1, 50.0) is None
    lv.forget(1)
    assert lv.offline(1, 1000.0) is None


@pytest.mark.parametrize("kw", [dict(battery_low_pct=5, battery_critical_pct=10),
                                dict(offline_after_s=0), dict(battery_low_pct=20.5),
                                dict(offline_priority=9)])
def test_bad_technical_config(kw):
    with pytest.raises(ConfigError):
        TechnicalConfig(**kw)


def test_device_clock_ahead_raises_clock_drift_after_its_onset(rig):
    w = ScenarioWearable(device_id=37, start_us=START + 60_000_000, seed=1)  # 60 s ahead
    ok = ScenarioWearable(device_id=38, start_us=START, seed=2)
    rig.run([w, ok], 28)
    assert not rig.raised("clock.drift")  # 30 s onset delay: a backlog drains first
    rig.run([w, ok], 5)
    got = rig.raised("clock.drift")
    assert [e.alarm.device_id for e in got] == [37] and 59 < got[0].alarm.value < 61


def test_an_engine_running_late_raises_no_clock_drift(tmp_path):
    """Devices on time, but the engine analyses every batch 40 s after its commit (an
    overloaded server): the device clocks are judged against the commit, not against
    the engine's own late clock, so no clock.drift. It was raised for every device."""
    lag = {"s": 0.0}
    rig = Rig(tmp_path)
    engine_thread = rig.engine._thread
    real = rig.engine._clock
    rig.engine._clock = lambda: real() + (lag["s"] if threading.current_thread()
                                          is engine_thread else 0.0)
    try:
        w = ScenarioWearable(device_id=39, start_us=START, seed=3)
        lag["s"] = 40.0
        rig.run([w], 40)
        assert not rig.raised("clock.drift")
        ahead = ScenarioWearable(device_id=40, start_us=START + 80_000_000, seed=4)
        rig.run([w, ahead], 35)  # a device really 40 s ahead of the commit is still seen
        got = rig.raised("clock.drift")
        assert [e.alarm.device_id for e in got] == [40] and 39 < got[0].alarm.value < 41
    finally:
        rig.close()


def test_flush_errors_raise_storage_flush(rig):
    rig.store.counters["flush_errors"] += 2
    rig.clock.t += 10
    assert rig.engine.wait_idle(10)
    got = rig.raised("storage.flush", 0)
    assert len(got) == 1 and "2 Parquet flush" in got[0].alarm.message
