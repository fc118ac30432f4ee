"""Hostile telemetry through the tracker's database (hypothesis, SQLite in memory):
nothing raises, bad entries are counted, and how readings are split into batches never
changes the hours (nothing counted twice, nothing lost between transactions)."""

from __future__ import annotations

from clinical_world import T0
from fleet_world import bare_tracker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.fleet import StatusReading

S = 1_000_000


_any_int = st.one_of(st.integers(-5, 5), st.integers(0, 1 << 66), st.booleans(),
                     st.integers(-(1 << 70), -1))
_serial = st.one_of(st.sampled_from(["BAT-1", "LW-1", "X", " padded ", "=1+2"]),
                    st.text(max_size=20))
_acc = st.tuples(st.one_of(st.integers(0, 9), _any_int), _serial,
                 st.one_of(st.integers(0, (1 << 32) - 1), _any_int))
_reading = st.builds(StatusReading, st.one_of(st.sampled_from([1, 2, 3]), _any_int),
                     st.one_of(st.integers(T0, T0 + 10**12), _any_int),
                     st.one_of(st.integers(0, 10**9), _any_int),
                     st.one_of(st.lists(_acc, max_size=4).map(tuple),
                               st.lists(st.one_of(st.none(), st.tuples(st.integers())),
                                        max_size=2).map(tuple)))


def _valid(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_reading, max_size=12))
def test_hostile_readings_never_raise_and_are_counted(readings):
    tracker = bare_tracker()
    report = tracker.ingest(readings)
    bad_frames = [r for r in readings if not (
        _valid(r.device_id, 1, (1 << 64) - 1) and _valid(r.ts_us, 0, (1 << 63) - 1)
        and _valid(r.powered_s, 0, (1 << 32) - 1))]
    assert report.readings == len(readings) and report.rejected >= len(bad_frames)
    for a in tracker.assets():
        assert a.hours >= 0
        assert a.serial is None or (1 <= len(a.serial) <= 16 and a.serial.isprintable())
    tracker.close()


_step = st.tuples(st.sampled_from([1, 2, 3]), st.integers(1, 200),
                  st.sampled_from(["on", "on", "on", "reset", "late"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, min_size=1, max_size=40), st.lists(st.integers(1, 10), max_size=8))
def test_batching_never_changes_the_hours(steps, cuts):
    """One accessory moving between terminals 1-3 (with resets and late frames).

    Ingested in one call and in several (same order): identical results, so transaction
    boundaries lose and double nothing. Delivered in arrival order, late frames in later
    calls: monotonic, and never more than the time that passed."""
    t, counter, readings = T0, 5000, []
    for terminal, dt, what in steps:
        t += dt * S
        counter = 0 if what == "reset" else counter + dt
        if what == "late" and readings:
            readings.append(readings[len(readings) // 2])
            continue
        readings.append(StatusReading(terminal, t, counter // 2,
                                      ((2, "BAT-H", counter),)))
    in_order = sorted(readings, key=lambda r: r.ts_us)  # what one ingest call processes
    whole, split, arrival = bare_tracker(), bare_tracker(), bare_tracker()
    whole.ingest(readings)
    last = 0.0
    for tracker, source in ((split, in_order), (arrival, readings)):
        i, last = 0, 0.0
        for n in cuts + [len(source)]:
            tracker.ingest(source[i:i + n])
            i += n
            if tracker.assets():
                now = tracker.asset("battery", "BAT-H").hours
                assert now >= last
                last = now
    a, b = whole.asset("battery", "BAT-H"), split.asset("battery", "BAT-H")
    assert (a.hours, a.resets, a.installed_on) == (b.hours, b.resets, b.installed_on)
    assert [e.kind for e in whole.events()] == [e.kind for e in split.events()]
    elapsed_h = (5000 + sum(dt for _, dt, _ in steps)) / 3600
    assert a.hours <= elapsed_h and arrival.asset("battery", "BAT-H").hours <= elapsed_h
    for tracker in (whole, split, arrival):
        tracker.close()
