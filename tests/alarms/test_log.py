"""Durable alarm log: read back by time range and device, evidence kept, torn tail."""

from __future__ import annotations

import numpy as np
import pytest
from alarm_helpers import START

from vitalcore.alarms.log import SCHEMA, AlarmLog
from vitalcore.alarms.model import (
    Alarm,
    AlarmCategory,
    AlarmEvent,
    AlarmPriority,
    EventKind,
    Evidence,
)
from vitalcore.errors import StorageError, UsageError


def ev(seq, dev, ts, evidence=None, kind=EventKind.RAISED, user=""):
    a = Alarm(f"{dev:016x}-hr.high-{seq}", dev, "hr.high", AlarmCategory.PHYSIOLOGICAL,
              AlarmPriority.MEDIUM, "HR 130 above 120", ts - 5, ts, 130.0, 120.0)
    return AlarmEvent(seq, kind, ts, a, user, ("x",) if kind == "escalated" else (), evidence)


def test_roundtrip_by_time_and_device(tmp_path):
    lg = AlarmLog(tmp_path)
    wave = np.linspace(-1, 1, 500, dtype=np.float32)
    wave[3] = np.nan
    e1 = ev(1, 7, START, Evidence({1: (START - 10, 130.0), 3: (START - 10, 97.0)}, 1, 250,
                                  START - 2_000_000, wave))
    lg.append([e1, ev(2, 8, START + 10)])
    lg.append([ev(3, 7, START + 20, kind=EventKind.ACKNOWLEDGED, user="nurse.li")])
    t = lg.read(START, START + 100)
    assert t.schema == SCHEMA and t.num_rows == 3
    assert lg.read(START, START + 100, device_id=7)["seq"].to_pylist() == [1, 3]
    assert lg.read(START + 5, START + 20)["seq"].to_pylist() == [2]
    row = t.slice(0, 1).to_pylist()[0]
    assert row["numerics"] == [{"code": 1, "ts_us": START - 10, "value": 130.0},
                               {"code": 3, "ts_us": START - 10, "value": 97.0}]
    got = np.array(row["wave"], dtype=np.float32)
    np.testing.assert_array_equal(got, wave)
    assert row["wave_fs"] == 250 and row["wave_type"] == 1
    assert t["user"].to_pylist()[2] == "nurse.li"
    lg.close()
    with pytest.raises(StorageError):
        lg.append([ev(4, 7, START)])
    # a new run reads the old files too
    lg2 = AlarmLog(tmp_path)
    lg2.append([ev(5, 9, START + 30)])
    assert lg2.read(0, 2**62)["seq"].to_pylist() == [1, 2, 3, 5]
    lg2.close()


def test_torn_tail_keeps_complete_batches(tmp_path):
    lg = AlarmLog(tmp_path, segment_bytes=1 << 30)
    for i in range(5):
        lg.append([ev(i, 1, START + i)])
    lg.close()
    (path,) = tmp_path.glob("*.arrows")
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # a crash in the middle of the last batch
    lg = AlarmLog(tmp_path)
    t = lg.read(0, 2**62)
    assert t["seq"].to_pylist() == [0, 1, 2, 3] and lg.counters["torn_files"] == 1


def test_background_writer_group_commits(tmp_path):
    lg = AlarmLog(tmp_path)
    for i in range(50):
        lg.submit([ev(i, 1 + i % 3, START + i)])
    assert lg.flush(10)
    assert lg.read(0, 2**62)["seq"].to_pylist() == list(range(50))
    assert lg.counters["events"] == 50 and lg.counters["appends"] <= 50
    lg.close()
    with pytest.raises(StorageError):
        lg.submit([ev(99, 1, START)])


def test_segments_rotate(tmp_path):
    lg = AlarmLog(tmp_path, segment_bytes=4096)
    for i in range(20):
        lg.append([ev(i, 1, START + i)])
    assert len(list(tmp_path.glob("*.arrows"))) > 1
    assert lg.read(0, 2**62).num_rows == 20
    with pytest.raises(UsageError):
        AlarmLog(tmp_path, segment_bytes=10)


def test_engine_logs_raise_with_evidence_and_ack(rig):
    from vitalcore.sim.wearable import ScenarioWearable

    w = ScenarioWearable(device_id=51, start_us=START, hr_bpm=135, spo2=85, seed=1)
    rig.run([w], 8)
    spo2 = rig.raised("spo2.low", 51)[0]
    rig.engine.acknowledge(spo2.alarm.alarm_id, "nurse.li")
    assert rig.log.flush(10)  # the engine's writes are group-committed in the background
    t = rig.log.read(0, 2**62, device_id=51).to_pylist()
    raised = {r["code"]: r for r in t if r["kind"] == "raised"}
    assert set(raised) >= {"hr.high", "pr.high", "spo2.low"}
    assert raised["spo2.low"]["wave_type"] == 2 and raised["spo2.low"]["wave_fs"] == 100
    assert raised["hr.high"]["wave_type"] == 1 and len(raised["hr.high"]["wave"]) > 250
    assert {n["code"] for n in raised["hr.high"]["numerics"]} >= {1, 2, 3}
    acks = [r for r in t if r["kind"] == "acknowledged"]
    assert len(acks) == 1 and acks[0]["user"] == "nurse.li" and acks[0]["acked_us"] > 0
