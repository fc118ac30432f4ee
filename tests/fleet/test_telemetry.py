"""Hours from real telemetry: simulated wearables → Store → StoreFeeder → tracker, on a
fake (device) clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from clinical_world import DEVICES, T0
from fleet_world import H_US, HOUR, run, wearable

from vitalcore import protocol as P
from vitalcore.fleet import Alert, EventKind, Kind, StoreFeeder, catch_up
from vitalcore.storage import Store

BAT, LW = P.AccessoryKind.BATTERY, P.AccessoryKind.LEAD_WIRE
D1, D2 = DEVICES[0], DEVICES[1]
MIN_US = 60_000_000
Q_US = 15 * MIN_US  # simulated spans are kept short: only the counters matter
LAST_Q_S = 15 * 60 - 10  # STATUS every 10 s from t=0: the last of 15 min is at 890 s


@pytest.fixture
def pipe(world, tmp_path):
    store, tracker = world
    frames = Store(tmp_path / "frames", flush_interval_s=0, sync="none")
    feeder = StoreFeeder(tracker)
    feeder.attach(frames)
    yield store, tracker, frames, feeder
    feeder.detach()
    frames.close()


def test_hours_accrue_from_status_frames(pipe):
    _, tracker, frames, feeder = pipe
    w = wearable(D1, T0, powered_s=1000 * HOUR,
                 accessories=[(LW, "LW-A", 10 * HOUR), (BAT, "BAT-A", 20 * HOUR)])
    run(frames, feeder, [w], T0 + 2 * Q_US)
    last = 2 * LAST_Q_S + 10  # device time of the last STATUS frame, s
    t = tracker.terminal(D1)
    assert t.hours == pytest.approx(1000 + last / HOUR)
    assert tracker.asset(Kind.LEAD_WIRE, "LW-A").hours == pytest.approx(10 + last / HOUR)
    bat = tracker.asset("battery", "BAT-A")
    assert bat.hours == pytest.approx(20 + last / HOUR)
    assert bat.installed_on == D1 and bat.limit_h == 4380 and t.limit_h == 17_520
    assert feeder.ingested == 2 * 90 and feeder.pending == 0


def test_battery_crosses_its_warning_and_is_due(pipe):
    _, tracker, frames, feeder = pipe
    seen = []
    tracker.add_listener(seen.append)
    warn_at = (4380 - 438) * HOUR  # default margin: 10 % of the limit
    w = wearable(D1, T0, accessories=[(BAT, "BAT-W", warn_at - 5 * 60), (LW, "LW-W", 0)])
    run(frames, feeder, [w], T0 + 2 * MIN_US)
    assert tracker.due() == [] and tracker.asset("battery", "BAT-W").alert is Alert.OK
    run(frames, feeder, [w], T0 + 10 * MIN_US)
    warnings = [e for e in seen if e.kind is EventKind.WARNING]
    assert len(warnings) == 1
    ev = warnings[0]
    assert (ev.serial, ev.asset_kind, ev.device_id) == ("BAT-W", Kind.BATTERY, D1)
    assert ev.at_us == T0 + 5 * MIN_US  # the STATUS frame that crossed it
    assert ev.detail["limit_h"] == 4380 and ev.hours == pytest.approx(3942)
    due = tracker.due()
    assert [(d.asset.serial, d.alert, d.reason) for d in due] == [("BAT-W", Alert.WARNING,
                                                                   "hours")]
    assert due[0].remaining_h == pytest.approx(438 - (590 - 300) / HOUR)
    # once per crossing: more telemetry raises nothing new
    run(frames, feeder, [w], T0 + Q_US)
    assert sum(e.kind is EventKind.WARNING for e in seen) == 1
    assert tracker.events(kinds={"warning"})[0].event_id == ev.event_id


def test_over_limit_event_and_async_subscription(pipe):
    _, tracker, frames, feeder = pipe
    w = wearable(D1, T0, accessories=[(LW, "LW-OLD", 4380 * HOUR - 600), (BAT, "B-OK", 0)])

    async def main():
        sub = tracker.subscribe({"over_limit"})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, run, frames, feeder, [w], T0 + Q_US)
        ev = await sub.get(timeout=5)
        sub.close()
        rest = [e async for e in sub]
        return ev, rest

    ev, rest = asyncio.run(main())
    assert (ev.kind, ev.serial, ev.at_us) == (EventKind.OVER_LIMIT, "LW-OLD", T0 + 600_000_000)
    assert rest == []
    assert tracker.due()[0].alert is Alert.OVER_LIMIT


def test_accessory_moved_between_terminals_keeps_its_hours(pipe):
    store, tracker, frames, feeder = pipe
    a = wearable(D1, T0, accessories=[(BAT, "BAT-M", 100 * HOUR)])
    run(frames, feeder, [a], T0 + Q_US)
    on_a = tracker.asset("battery", "BAT-M").hours
    assert on_a == pytest.approx(100 + LAST_Q_S / HOUR)
    # 5 min on the shelf (unpowered), then into terminal D2: its counter moved with it
    b = wearable(D2, T0 + Q_US + 5 * MIN_US, accessories=[(BAT, "BAT-M", 100 * HOUR + LAST_Q_S)])
    run(frames, feeder, [b], T0 + 2 * Q_US + 5 * MIN_US)
    bat = tracker.asset("battery", "BAT-M")
    assert bat.hours == pytest.approx(on_a + LAST_Q_S / HOUR)
    assert bat.installed_on == D2
    detail = tracker.drill_down("biomed", "battery", "BAT-M")
    assert [(i.terminal_device_id, i.end_us is None) for i in detail.installs] == [
        (D1, False), (D2, True)]
    moved = [e for e in detail.events if e.kind is EventKind.MOVED]
    assert len(moved) == 1 and moved[0].detail["from_device"] == f"{D1:016x}"
    # the terminals' own hours are theirs alone
    assert tracker.terminal(D2).hours == pytest.approx(LAST_Q_S / HOUR)


def test_counter_reset_is_recorded_and_loses_nothing_accrued(pipe):
    _, tracker, frames, feeder = pipe
    w = wearable(D1, T0, powered_s=500 * HOUR, accessories=[(BAT, "BAT-R", 7 * HOUR)])
    run(frames, feeder, [w], T0 + Q_US)
    before = tracker.terminal(D1).hours
    # the terminal reboots with a wiped counter (firmware update): it starts again at 0
    again = wearable(D1, T0 + Q_US + MIN_US, powered_s=0,
                     accessories=[(BAT, "BAT-R", 7 * HOUR + LAST_Q_S + 60)])
    run(frames, feeder, [again], T0 + 2 * Q_US)
    t = tracker.terminal(D1)
    assert t.resets == 1
    since_reboot = (Q_US - MIN_US) // 1_000_000 - 10  # to its last STATUS frame, s
    assert t.hours == pytest.approx(before + since_reboot / HOUR)
    (reset,) = tracker.events(kinds={"reset"})
    assert reset.device_id == D1 and reset.detail["last_raw_s"] == 500 * HOUR + LAST_Q_S
    assert reset.detail["raw_s"] == 0 and reset.detail["credited_s"] == 0
    assert tracker.asset("battery", "BAT-R").resets == 0


def test_unknown_device_is_recorded_and_its_accessories_tracked(pipe):
    _, tracker, frames, feeder = pipe
    stranger = 0xBAD0
    w = wearable(stranger, T0, accessories=[(BAT, "BAT-U", 5 * HOUR)])
    run(frames, feeder, [w], T0 + 10 * MIN_US)
    (ev,) = tracker.events(kinds={"unknown_device"})
    assert ev.device_id == stranger
    assert tracker.statistics().unknown_devices == 1
    assert tracker.asset("battery", "BAT-U").hours == pytest.approx(5 + 590 / HOUR)
    with pytest.raises(Exception, match="no terminal in service"):
        tracker.terminal(stranger)


def test_duplicate_serial_on_two_terminals_is_not_counted_twice(pipe):
    _, tracker, frames, feeder = pipe
    a = wearable(D1, T0, accessories=[(BAT, "BAT-TWIN", 100 * HOUR)])
    b = wearable(D2, T0 + 1_000_000, accessories=[(BAT, "BAT-TWIN", 900 * HOUR)])
    run(frames, feeder, [a, b], T0 + 10 * MIN_US)
    bat = tracker.asset("battery", "BAT-TWIN")
    assert bat.hours == pytest.approx(100 + 590 / HOUR)  # the first terminal's only
    (ev,) = tracker.events(kinds={"duplicate_serial"})
    assert ev.detail["reported_by"] == f"{D2:016x}"


def test_usage_hours_per_ward_and_month(pipe):
    store, tracker, frames, feeder = pipe
    w = wearable(D1, T0)
    store.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + 10)
    run(frames, feeder, [w], T0 + Q_US)
    store.transfer("bedmgr", "P1", "W2", at_us=T0 + Q_US)
    run(frames, feeder, [w], T0 + 3 * Q_US)
    # still bound: counted up to "now", never into the future
    mid = tracker.usage(T0, T0 + 24 * H_US, now_us=T0 + 2 * Q_US)
    assert {u.ward_id: round(u.bound_h, 6) for u in mid} == {"W1": 0.25, "W2": 0.25}
    store.discharge("nurse2", "P1", at_us=T0 + 3 * Q_US)
    run(frames, feeder, [w], T0 + 4 * Q_US)  # unbound: powered, but not usage
    rows = {(u.ward_id, u.month): u for u in tracker.usage(T0, T0 + 24 * H_US)}
    assert set(rows) == {("W1", "2025-11"), ("W2", "2025-11")}
    assert rows["W1", "2025-11"].bound_h == pytest.approx(0.25)
    assert rows["W2", "2025-11"].bound_h == pytest.approx(0.5)
    # powered time goes to the ward at each STATUS frame (every 10 s)
    assert rows["W1", "2025-11"].powered_h == pytest.approx(0.25, abs=10 / HOUR)
    assert rows["W2", "2025-11"].powered_h == pytest.approx(0.5, abs=10 / HOUR)
    assert rows["W1", "2025-11"].devices == 1
    assert tracker.terminal(D1).hours == pytest.approx((HOUR - 10) / HOUR)
    assert [u.ward_id for u in tracker.usage(T0, T0 + 24 * H_US, ward_id="W2")] == ["W2"]


def test_catch_up_from_store_history_counts_nothing_twice(pipe, world):
    _, tracker, frames, feeder = pipe
    w = wearable(D1, T0, accessories=[(BAT, "BAT-C", HOUR)])
    feeder.detach()  # the tracker is "down": frames reach the store only
    run(frames, feeder, [w], T0 + Q_US)
    assert tracker.assets() == []
    frames.flush()
    first = catch_up(tracker, frames, [D1], T0, T0 + Q_US)
    assert first.readings == 90 and first.stale == 0
    hours = tracker.asset("battery", "BAT-C").hours
    assert hours == pytest.approx(1 + LAST_Q_S / HOUR)
    again = catch_up(tracker, frames, [D1], T0, T0 + Q_US)
    assert again.credited_s == 0 and again.stale == 2 * 90  # terminal + battery
    assert tracker.asset("battery", "BAT-C").hours == hours


def test_patient_device_swap_keeps_each_terminals_hours_and_the_usage(pipe):
    store, tracker, frames, feeder = pipe
    a = wearable(D1, T0, powered_s=200 * HOUR)
    b = wearable(D2, T0, powered_s=300 * HOUR)
    store.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + 10)
    run(frames, feeder, [a, b], T0 + 5 * MIN_US)
    store.swap_device("nurse1", "P1", D1, D2, at_us=T0 + 5 * MIN_US)
    run(frames, feeder, [a, b], T0 + 10 * MIN_US)
    assert tracker.terminal(D1).hours == pytest.approx(200 + 590 / HOUR)
    assert tracker.terminal(D2).hours == pytest.approx(300 + 590 / HOUR)
    (row,) = tracker.usage(T0, T0 + H_US, now_us=T0 + 10 * MIN_US)
    assert (row.ward_id, row.devices) == ("W1", 2)
    assert row.bound_h == pytest.approx(10 / 60, abs=1e-6)
    # D1's frames until the swap and D2's after it: the ward's powered time has no gap
    assert row.powered_h == pytest.approx(10 / 60, abs=20 / HOUR)
