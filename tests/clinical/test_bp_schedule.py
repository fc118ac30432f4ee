"""BP schedules: configuration, day/night grid across DST, the scheduler on a fake clock,
measure-now for a patient and a ward through a real CommandCenter and Store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore import protocol as P
from vitalcore.clinical.bp_schedule import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    BPScheduleConfig,
    BPScheduler,
    FakeClock,
    WallClock,
    devices_from_spans,
)
from vitalcore.clinical.spans import DeviceSpan
from vitalcore.errors import UsageError
from vitalcore.server.commands import CommandCenter, CommandStatus
from vitalcore.sim.loopback import LoopbackWard
from vitalcore.sim.wearable import ScenarioWearable
from vitalcore.storage.store import Store

BERLIN = ZoneInfo("Europe/Berlin")
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
NIBP = [P.NumericCode.NIBP_SYS, P.NumericCode.NIBP_DIA, P.NumericCode.NIBP_MAP]


def us(*args, tz=BERLIN) -> int:
    return (datetime(*args, tzinfo=tz) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1)


def local(t_us: int) -> str:
    return datetime.fromtimestamp(t_us / 1e6, BERLIN).strftime("%m-%d %H:%M %Z")


def dues(cfg: BPScheduleConfig, t0: int, t1: int) -> list[int]:
    out, t = [], t0
    while (t := cfg.next_due(t)) < t1:
        out.append(t)
    return out


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    def runner(coro, timeout: float = 60.0):
        async def bounded():
            return await asyncio.wait_for(coro, timeout)

        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            return r.run(bounded())

    return runner


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [
    ({"tz": "Mars/Olympus_Mons"}, "unknown time zone"),
    ({"tz": "../etc/passwd"}, "unknown time zone"),
    ({"tz": ""}, "IANA"),
    ({"day_interval_s": 0}, "day_interval_s must be within"),
    ({"night_interval_s": -900}, "night_interval_s must be within"),
    ({"day_interval_s": MIN_INTERVAL_S - 1}, "within 60"),
    ({"night_interval_s": MAX_INTERVAL_S + 1}, "within"),
    ({"day_interval_s": float("nan")}, "within"),
    ({"day_interval_s": True}, "number of seconds"),
    ({"day_interval_s": "900"}, "number of seconds"),
    ({"day_start": dtime(7), "day_end": dtime(7)}, "must differ"),
    ({"day_start": dtime(7, tzinfo=UTC)}, "naive"),
    ({"day_end": 22}, "naive datetime.time"),
])
def test_bad_config_is_refused(kw, msg):
    kw.setdefault("tz", "Europe/Berlin")
    with pytest.raises(UsageError, match=msg):
        BPScheduleConfig(**kw)


def test_day_night_grid_and_period_starts():
    cfg = BPScheduleConfig("Europe/Berlin")  # 07:00-22:00 every 15 min, else every 30 min
    t = dues(cfg, us(2026, 6, 10, 20, 50), us(2026, 6, 10, 23, 5))
    assert [local(x)[6:11] for x in t] == ["21:00", "21:15", "21:30", "21:45", "22:00", "22:30",
                                           "23:00"]
    day = dues(cfg, us(2026, 6, 10, 0, 0), us(2026, 6, 11, 0, 0))
    assert len(day) == 15 * 4 + 9 * 2 - 1  # 00:00 itself is not after 00:00
    # a period whose length is no multiple of the interval still starts with a measurement
    odd = BPScheduleConfig("UTC", dtime(7, 0), dtime(7, 50), 1200, 3600)
    t = dues(odd, us(2026, 6, 10, 6, 59, tz=UTC), us(2026, 6, 10, 9, 1, tz=UTC))
    assert [datetime.fromtimestamp(x / 1e6, UTC).strftime("%H:%M") for x in t] == [
        "07:00", "07:20", "07:40", "07:50", "08:50"]
    p = odd.period_at(us(2026, 6, 10, 7, 50, tz=UTC))
    assert not p.is_day and p.start_us == us(2026, 6, 10, 7, 50, tz=UTC)


@pytest.mark.parametrize("night, hours, n_night", [
    ((2026, 3, 28), 8, 16),   # clocks go forward at 02:00 on the 29th
    ((2026, 10, 24), 10, 20),  # clocks go back at 03:00 on the 25th
    ((2026, 6, 13), 9, 18),
])
def test_dst_nights_keep_real_intervals_and_local_boundaries(night, hours, n_night):
    cfg = BPScheduleConfig("Europe/Berlin")
    start = us(*night, 22, 0)
    end = us(*(datetime(*night) + timedelta(days=1)).timetuple()[:3], 7, 0)
    assert end - start == hours * 3600 * 10**6
    t = dues(cfg, start - 1, end + 1)
    assert t[0] == start and t[-1] == end  # both boundaries at local wall-clock time
    assert len(t) - 1 == n_night
    assert {b - a for a, b in zip(t, t[1:], strict=False)} == {1800 * 10**6}  # real time, no 1 h gap
    assert (local(start)[6:11], local(end)[6:11]) == ("22:00", "07:00")


def test_boundary_in_dst_gap_lands_after_it():
    cfg = BPScheduleConfig("Europe/Berlin", day_start=dtime(2, 30), day_end=dtime(20, 0))
    p = cfg.period_at(us(2026, 3, 29, 12, 0))
    assert p.is_day and local(p.start_us) == "03-29 03:30 CEST"
    assert local(cfg.period_at(us(2026, 3, 30, 12, 0)).start_us) == "03-30 02:30 CEST"


def test_day_period_across_midnight():
    cfg = BPScheduleConfig("UTC", day_start=dtime(20, 0), day_end=dtime(8, 0),
                           day_interval_s=3600, night_interval_s=7200)
    p = cfg.period_at(us(2026, 6, 10, 23, 0, tz=UTC))
    assert p == (True, us(2026, 6, 10, 20, 0, tz=UTC), us(2026, 6, 11, 8, 0, tz=UTC))
    assert not cfg.period_at(us(2026, 6, 11, 9, 0, tz=UTC)).is_day


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC",
                           "Asia/Kathmandu"]),
       start_min=st.integers(0, 24 * 60 - 1), len_min=st.integers(1, 24 * 60 - 1),
       day_s=st.integers(MIN_INTERVAL_S, 4 * 3600), night_s=st.integers(MIN_INTERVAL_S, 4 * 3600),
       t=st.integers(us(2025, 1, 1, 0, 0, tz=UTC), us(2028, 12, 31, 0, 0, tz=UTC)))
def test_grid_invariants(tz, start_min, len_min, day_s, night_s, t):
    end_min = (start_min + len_min) % (24 * 60)
    cfg = BPScheduleConfig(tz, dtime(start_min // 60, start_min % 60),
                           dtime(end_min // 60, end_min % 60), day_s, night_s)
    p = cfg.period_at(t)
    assert p.start_us <= t < p.end_us
    nxt = cfg.next_due(t)
    assert t < nxt <= t + cfg.interval_us(p.is_day)
    assert nxt <= p.end_us  # never skips a period start
    assert cfg.next_due(nxt) > nxt


def test_devices_from_spans_picks_the_binding_at_t():
    spans = [DeviceSpan("p1", 0xA, 100, 200, "w1"), DeviceSpan("p1", 0xB, 200, None, "w2")]
    resolve = devices_from_spans(lambda p, t0, t1: [s for s in spans if s.patient_id == p])
    assert resolve("p1", 150) == [0xA] and resolve("p1", 200) == [0xB]
    assert resolve("p2", 150) == []


# -- the scheduler on a fake clock ----------------------------------------------------------------
def _rig(loop, tmp_path, clock, n_devices=0, connected=True, **kw):
    store = Store(tmp_path / "store", flush_interval_s=0, sync="none")
    wearables = [ScenarioWearable(device_id=0x100 + i, start_us=clock.now_us(), seed=i,
                                  nibp_sys=118.0 + 6 * i, nibp_dia=76.0 + 2 * i,
                                  nibp_deflate_mmhg_s=5.0) for i in range(n_devices)]
    ward = LoopbackWard(loop, clock, store, wearables)
    if not connected:
        ward.connected.clear()
    center = CommandCenter(ward, store, default_timeout_s=30.0, first_command_id=1)
    return store, ward, center


def test_schedule_switches_day_night_over_dst_and_stops(run, tmp_path):
    async def scenario():
        clock = FakeClock(us(2026, 3, 28, 20, 50))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock, n_devices=1,
                                   connected=False)
        issued = []
        sched = BPScheduler(center, lambda p, t: [0x100] if p == "anna" else [], clock=clock,
                            on_round=lambda p, w, rnd: issued.append((clock.now_us(), p)))
        st = sched.start("anna", BPScheduleConfig("Europe/Berlin"))
        assert local(st.next_due_us) == "03-28 21:00 CET" and st.next_in_day
        clock.advance_to(us(2026, 3, 29, 7, 20))
        times = [local(t)[6:] for t, _ in issued]
        assert times[:6] == ["21:00 CET", "21:15 CET", "21:30 CET", "21:45 CET", "22:00 CET",
                             "22:30 CET"]
        assert "01:30 CET" in times and "03:00 CEST" in times and not any(
            t.startswith("02:") for t in times)
        assert times[-2:] == ["07:00 CEST", "07:15 CEST"]
        assert len(times) == 5 + 16 + 1  # 4 day + 22:00, 16 night intervals, 07:15
        s = sched.status("anna")
        assert s.issued == len(times) and s.outcomes == {"not_connected": len(times)}
        assert s.last_progress == (1, 0, 1, 0) and s.skipped == 0
        assert local(s.next_due_us) == "03-29 07:30 CEST"
        # reconfigure: night every hour; then stop: nothing more is issued
        sched.start("anna", BPScheduleConfig("Europe/Berlin", day_interval_s=3600))
        clock.advance(3600)
        assert [local(t)[6:11] for t, _ in issued[-1:]] == ["08:00"]
        assert sched.stop("anna") and not sched.stop("anna")
        n = len(issued)
        clock.advance(6 * 3600)
        assert len(issued) == n and clock.next_at() is None
        with pytest.raises(UsageError, match="no BP schedule"):
            sched.status("anna")
        center.close()
        store.close()

    run(scenario())


def test_scheduled_measurements_reach_the_store(run, tmp_path):
    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 9, 58))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock, n_devices=1)
        sched = BPScheduler(center, lambda p, t: [0x100], clock=clock)
        sched.start("ben", BPScheduleConfig("Europe/Berlin"))
        clock.advance(3600)  # 10:00, 10:15, 10:30, 10:45 (deflations take ~30 s)
        s = sched.status("ben")
        assert s.issued == 4 and s.outcomes == {"completed": 4}
        rows = store.read_numerics(0x100, 0, 2**62, NIBP).to_pydict()
        assert len(rows["ts_us"]) == 12
        sys_ = [v for c, v in zip(rows["code"], rows["value"], strict=True) if c == P.NumericCode.NIBP_SYS]
        assert all(abs(v - 118.0) < 5 for v in sys_)
        starts = sorted({t for t in rows["ts_us"]})
        assert [local(t)[6:11] for t in starts] == ["10:00", "10:15", "10:30", "10:45"]
        sched.close()
        with pytest.raises(UsageError, match="closed"):
            sched.start("ben", BPScheduleConfig("UTC"))
        center.close()
        store.close()

    run(scenario())


def test_measure_ward_now_progress_and_offline_device(run, tmp_path):
    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 14, 0))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock, n_devices=4)
        ward.connected.discard(0x103)
        wards = {"icu": [0x100, 0x101, 0x102, 0x103], "empty": []}
        sched = BPScheduler(center, lambda p, t: [], ward_devices=lambda w, t: wards[w],
                            clock=clock)
        updates = []
        rnd = sched.measure_ward_now("icu")
        rnd.on_update = lambda r: updates.append(rnd.progress())
        assert rnd.progress() == (4, 0, 1, 0)  # the offline device is final at once
        clock.advance(0.5)
        assert rnd.progress() == (4, 3, 1, 0)  # three cuffs inflating
        clock.advance(60)
        assert rnd.done and rnd.progress() == (4, 0, 4, 3)
        assert [u.done for u in updates if u.accepted == 0] == [4]
        results = await rnd.wait()
        by_dev = {r.device_id: r.status for r in results}
        assert by_dev == {0x100: CommandStatus.COMPLETED, 0x101: CommandStatus.COMPLETED,
                          0x102: CommandStatus.COMPLETED, 0x103: CommandStatus.NOT_CONNECTED}
        for i, dev in enumerate([0x100, 0x101, 0x102]):
            rows = store.read_numerics(dev, 0, 2**62, [P.NumericCode.NIBP_SYS]).to_pydict()
            assert len(rows["value"]) == 1 and abs(rows["value"][0] - (118 + 6 * i)) < 5
        with pytest.raises(UsageError, match="no device to measure"):
            sched.measure_ward_now("empty")
        with pytest.raises(UsageError, match="no device is bound"):
            sched.measure_now("nobody")
        # a second click while cuffs are still inflating: the devices answer BUSY
        first = sched.measure_ward_now("icu")
        clock.advance(0.5)
        second = sched.measure_ward_now("icu")
        clock.advance(0.5)
        assert [r.status for r in second.results[:3]] == [CommandStatus.BUSY] * 3
        clock.advance(60)
        assert first.progress().succeeded == 3
        center.close()
        store.close()

    run(scenario())


def test_failing_resolver_skips_without_stopping_others(run, tmp_path, caplog):
    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 12, 0, tz=UTC))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock, connected=False)

        def resolve(patient, t):
            if patient == "broken":
                raise KeyError(patient)
            return [] if patient == "unbound" else [0x100]

        sched = BPScheduler(center, resolve, clock=clock)
        cfg = BPScheduleConfig("UTC", day_interval_s=600)
        for p in ("broken", "unbound", "ok"):
            sched.start(p, cfg)
        clock.advance(1800)
        st = {s.patient_id: s for s in sched.schedules()}
        assert (st["broken"].skipped, st["broken"].issued) == (3, 0)
        assert "device lookup failed" in st["broken"].last_note
        assert (st["unbound"].skipped, st["unbound"].last_note) == (
            3, "no device bound to the patient")
        assert (st["ok"].issued, st["ok"].skipped) == (3, 0)
        assert "resolving the devices of patient 'broken' failed" in caplog.text
        center.close()
        # the center is closed under the scheduler: due times are skipped, not raised
        clock.advance(600)
        assert "command not sent" in sched.status("ok").last_note
        store.close()

    run(scenario())


def test_bad_scheduler_arguments(run, tmp_path):
    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 12, 0, tz=UTC))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock)
        with pytest.raises(UsageError, match="timeout_s"):
            BPScheduler(center, lambda p, t: [], timeout_s=0)
        sched = BPScheduler(center, lambda p, t: [], clock=clock)
        with pytest.raises(UsageError, match="BPScheduleConfig"):
            sched.start("p", {"tz": "UTC"})
        with pytest.raises(UsageError, match="non-empty str"):
            sched.start("", BPScheduleConfig("UTC"))
        with pytest.raises(UsageError, match="ward_devices resolver"):
            sched.measure_ward_now("icu")
        with pytest.raises(UsageError, match="forward"):
            clock.advance(-1)
        center.close()
        store.close()

    run(scenario())


def test_wall_clock_fires_and_cancels(run):
    async def scenario():
        loop = asyncio.get_running_loop()
        clock = WallClock(loop)
        fired = loop.create_future()
        clock.call_at(clock.now_us() + 30_000, lambda: fired.set_result(clock.now_us()))
        cancelled = []
        clock.call_at(clock.now_us() + 10_000, lambda: cancelled.append(1)).cancel()
        t0 = clock.now_us()
        t = await asyncio.wait_for(fired, 5)
        assert t >= t0 + 20_000 and cancelled == []
        past = loop.create_future()
        clock.call_at(0, lambda: past.set_result(True))  # already due: runs soon
        assert await asyncio.wait_for(past, 5)

    run(scenario())


def test_on_round_may_stop_schedules_and_its_errors_are_contained(run, tmp_path, caplog):
    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 12, 0, tz=UTC))
        store, ward, center = _rig(asyncio.get_running_loop(), tmp_path, clock, connected=False)
        seen = []

        def on_round(patient, ward_id, rnd):
            seen.append(patient)
            sched.stop("b" if patient == "a" else "a")  # the other one, due at the same time
            raise RuntimeError("dashboard bug")

        sched = BPScheduler(center, lambda p, t: [0x100], clock=clock, on_round=on_round)
        cfg = BPScheduleConfig("UTC", day_interval_s=600)
        sched.start("a", cfg)
        sched.start("b", cfg)
        clock.advance(600)
        assert len(seen) == 1 and len(sched.schedules()) == 1
        assert "on_round callback failed" in caplog.text
        clock.advance(600)
        assert len(seen) == 2  # the survivor goes on
        center.close()
        store.close()

    run(scenario())


def test_clinical_store_resolvers_plug_in(run, tmp_path):
    """The organisation store's lookups drive the scheduler: a ward round and a schedule
    that follows the patient's device swap."""
    from clinical_world import DEVICES, T0, build_world

    from vitalcore.clinical import open_store

    async def scenario():
        org = open_store(str(tmp_path / "org.sqlite"), log2_n=10)
        build_world(org)
        org.admit("nurse1", "P1", "W1", devices=[DEVICES[0]], at_us=T0 + 10)
        org.admit("nurse1", "P2", "W1", devices=[DEVICES[1]], at_us=T0 + 10)
        org.admit("nurse2", "P3", "W2", devices=[DEVICES[2]], at_us=T0 + 10)
        clock = FakeClock(T0 + 3600 * 10**6)
        store = Store(tmp_path / "store", flush_interval_s=0, sync="none")
        ward = LoopbackWard(asyncio.get_running_loop(), clock, store, [])
        ward.connected = set(DEVICES)  # sessions, no wearables: nothing answers
        center = CommandCenter(ward, store, default_timeout_s=30.0)
        sched = BPScheduler(center, devices_from_spans(org.device_spans),
                            ward_devices=org.devices_of_ward, clock=clock)
        rnd = sched.measure_ward_now("W1")
        assert sorted(r.device_id for r in rnd.results) == [DEVICES[0], DEVICES[1]]
        sched.start("P1", BPScheduleConfig("UTC", day_interval_s=600, night_interval_s=600))
        clock.advance(600)
        org.swap_device("nurse1", "P1", DEVICES[0], DEVICES[3], at_us=clock.now_us() + 1)
        clock.advance(600)
        sent = [(dev, kind) for _, dev, kind in ward.published]
        assert sent[2:] == [(DEVICES[0], P.CommandKind.START_NIBP),
                            (DEVICES[3], P.CommandKind.START_NIBP)]
        center.close()
        store.close()
        org.close()

    run(scenario())


# -- schedules kept in the clinical database ----------------------------------------------------
def test_schedules_survive_a_restart_through_the_book(run, tmp_path, store):
    from clinical_world import DEVICES, build_world

    from vitalcore.clinical import ScheduleBook

    build_world(store)
    store.admit("nurse1", "P1", "W1", "W1-B1", devices=[DEVICES[0]], at_us=us(2026, 6, 10, 8))
    book = ScheduleBook(store.db)

    async def scenario():
        clock = FakeClock(us(2026, 6, 10, 9, 58))
        wave_store, _, center = _rig(asyncio.get_running_loop(), tmp_path, clock)
        first = BPScheduler(center, lambda p, t: [], clock=clock, book=book)
        cfg = BPScheduleConfig("Europe/Berlin", dtime(6, 30), dtime(21), 1200, 3600)
        first.start("P1", cfg, by="nurse1")
        with pytest.raises(UsageError, match="unknown patient"):
            first.start("nobody", cfg)
        assert [s.patient_id for s in first.schedules()] == ["P1"]  # nothing half-written
        first.close()  # the server stops: the book keeps the schedule
        clock.advance(3 * 3600)
        again = BPScheduler(center, lambda p, t: [], clock=clock, book=book)
        (s,) = again.schedules()
        assert s.config == cfg and local(s.next_due_us) == "06-10 13:10 CEST"  # 06:30 + k * 20 min
        assert again.stop("P1") and book.load() == {}
        assert BPScheduler(center, lambda p, t: [], clock=clock, book=book).schedules() == []
        center.close()
        wave_store.close()

    run(scenario())
    with store.db.transaction() as tx:
        assert tx.all("SELECT set_by FROM bp_schedules") == []
