"""The ABPM report: statistics against hand-computed values, dipping classes, validity,
empty and insufficient data, and invariants over random readings."""

from __future__ import annotations

import math
import warnings
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.clinical.abpm import (
    DIPPING_CLASSES,
    INVALID_REASONS,
    ABPMConfig,
    NIBPReadings,
    ValidityCriteria,
    abpm_report,
    classify_dipping,
)
from vitalcore.errors import UsageError
from vitalcore.protocol import NumericCode, NumericStatus

nan = math.nan


def at(h: int, m: int = 0, day: int = 10) -> int:
    return (datetime(2026, 6, day, h, m, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // \
        timedelta(microseconds=1)


# (hour, sys, dia, map, pr, device_ok): UTC, so the clock windows are plain hours
ROWS = [
    (8, 140, 90, 107, 70, True),   # day, above 135/85 both
    (12, 130, 80, 97, 72, True),   # day
    (16, 136, 84, nan, 74, True),  # day, systolic above; no MAP
    (23, 115, 72, 86, 60, True),   # night, diastolic above 70
    (27, 110, 65, 80, 58, True),   # night (03:00 next day)
    (29, 300, 80, nan, nan, True),  # sys_range
    (30, 100, 90, 95, 60, True),   # pp_range (10 mmHg)
    (13, 120, 125, nan, nan, True),  # order: dia >= sys
    (14, nan, 80, nan, nan, True),  # missing
    (15, 125, 80, 95, 70, False),  # device flagged
]


def readings(rows=ROWS) -> NIBPReadings:
    ts = [at(0) + h * 3_600_000_000 for h, *_ in rows]
    cols = list(zip(*[r[1:] for r in rows], strict=True))
    return NIBPReadings.from_arrays(ts, *cols)


SMALL = ABPMConfig(min_day=3, min_night=2)


def test_statistics_match_hand_computed_values():
    rep = abpm_report(readings(), "UTC", config=SMALL)
    assert rep.n_readings == 10 and rep.n_valid == 5 and rep.valid_pct == 50.0
    assert rep.invalid == {"device": 1, "missing": 1, "sys_range": 1, "dia_range": 0,
                           "order": 1, "pp_range": 1, "pr_range": 0}
    d, n, h = rep.day, rep.night, rep.h24
    assert (d.n, n.n, h.n) == (3, 2, 5)
    assert d.sys == pytest.approx(406 / 3) and d.dia == pytest.approx(254 / 3)
    assert (d.map, d.n_map, d.pr) == (pytest.approx(102.0), 2, pytest.approx(72.0))
    assert (n.sys, n.dia, n.map, n.pr) == (112.5, 68.5, 83.0, 59.0)
    assert h.sys == pytest.approx(631 / 5)
    assert rep.dipping_sys_pct == pytest.approx(100 * (1 - 112.5 / (406 / 3)))  # 16.87 %
    assert rep.dipping_dia_pct == pytest.approx(100 * (1 - 68.5 / (254 / 3)))
    assert rep.dipping_class == "dipper"
    ld, ln, l24 = rep.load_day, rep.load_night, rep.load_24h
    assert (ld.n, ld.sys_pct, ld.dia_pct, ld.any_pct) == (3, pytest.approx(200 / 3),
                                                          pytest.approx(100 / 3),
                                                          pytest.approx(200 / 3))
    assert (ln.sys_pct, ln.dia_pct, ln.any_pct) == (0.0, 50.0, 50.0)
    assert (l24.n, l24.sys_pct, l24.dia_pct, l24.any_pct) == (5, 40.0, 40.0, 60.0)
    ex = rep.extremes
    assert ex["sys_max"] == (140.0, at(8)) and ex["sys_min"] == (110.0, at(3, day=11))
    assert ex["dia_max"] == (90.0, at(8)) and ex["dia_min"] == (65.0, at(3, day=11))
    hourly = {hs.hour: hs for hs in rep.hourly}
    assert len(rep.hourly) == 24 and sum(hs.n for hs in rep.hourly) == 5
    assert hourly[8].sys == 140 and hourly[5].n == 0 and hourly[5].sys is None
    assert [INVALID_REASONS[k - 1] for k in rep.reason if k] == [
        "order", "missing", "device", "sys_range", "pp_range"]  # in time order
    assert rep.adequate is False and rep.notes == ["valid readings 50 % of received (need >= 70 %)"]
    # relative to the measurements scheduled instead of those received
    rep8 = abpm_report(readings(), "UTC", config=SMALL, n_expected=8)
    assert rep8.valid_pct == 62.5 and "of expected" in rep8.notes[0]


def test_default_minimums_make_the_class_insufficient():
    rep = abpm_report(readings(), "UTC")
    assert rep.dipping_sys_pct == pytest.approx(16.87, abs=0.01)
    assert rep.dipping_class == "insufficient data"
    assert "3 valid day readings (need >= 20)" in rep.notes
    assert "2 valid night readings (need >= 7)" in rep.notes


def test_sleep_diary_replaces_the_clock_windows():
    rep = abpm_report(readings(), "UTC", config=SMALL, sleep=[(at(11), at(13))])
    assert rep.periods_from == "sleep diary"
    assert (rep.night.n, rep.night.sys) == (1, 130.0)  # the 12:00 nap reading
    assert (rep.day.n, rep.day.sys) == (4, (140 + 136 + 115 + 110) / 4)
    assert rep.dipping_class == "insufficient data"  # one night reading < 2
    with pytest.raises(UsageError, match="start_us < end_us"):
        abpm_report(readings(), "UTC", sleep=[(at(13), at(11))])
    with pytest.raises(UsageError, match=r"sleep\[0\]"):
        abpm_report(readings(), "UTC", sleep=[(at(13),)])


def test_narrow_windows_leave_transition_hours_to_24h_only():
    rep = abpm_report(readings(), "UTC", config=ABPMConfig.narrow(min_day=1, min_night=1))
    assert (rep.day.n, rep.night.n, rep.h24.n) == (2, 1, 5)  # 08:00 and 23:00 in neither
    assert rep.load_24h.n == 3
    assert rep.day.sys == 133.0 and rep.night.sys == 110.0


def test_local_time_zone_moves_readings_between_periods():
    # 05:30 UTC is 07:30 in Berlin (summer): day there, night in UTC
    r = NIBPReadings.from_arrays([at(5, 30)], [120.0], [80.0])
    assert abpm_report(r, "UTC").night.n == 1
    berlin = abpm_report(r, "Europe/Berlin")
    assert berlin.day.n == 1 and berlin.hourly[7].n == 1


@pytest.mark.parametrize("pct, cls", [
    (25.0, "extreme dipper"), (20.0, "extreme dipper"), (19.99, "dipper"), (10.0, "dipper"),
    (9.99, "non-dipper"), (0.0, "non-dipper"), (-0.01, "reverse dipper"),
    (None, "insufficient data"), (nan, "insufficient data")])
def test_dipping_classes(pct, cls):
    assert classify_dipping(pct) == cls


def _dipper(day_sys: float, night_sys: float) -> NIBPReadings:
    ts = [at(8) + k * 1_800_000_000 for k in range(28)]  # 08:00..21:30 day
    ts += [at(23) + k * 1_800_000_000 for k in range(8)]  # 23:00..02:30 night
    sys_ = [day_sys] * 28 + [night_sys] * 8
    return NIBPReadings.from_arrays(ts, sys_, [70.0] * 36)


@pytest.mark.parametrize("night, cls", [(100, "extreme dipper"), (112, "dipper"),
                                        (120, "non-dipper"), (130, "reverse dipper")])
def test_dipping_class_of_a_full_recording(night, cls):
    rep = abpm_report(_dipper(125.0, night), "UTC")
    assert rep.dipping_class == cls and rep.adequate and rep.notes == []
    assert rep.dipping_sys_pct == pytest.approx(100 * (1 - night / 125))


def test_empty_range_and_no_valid_readings_are_explicit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning anywhere
        rep = abpm_report(readings(), "UTC", t0_us=at(0, day=20), t1_us=at(0, day=21))
        empty = abpm_report(NIBPReadings.from_arrays([], [], []), "UTC")
        bad = abpm_report(readings(ROWS[5:]), "UTC")
    for r in (rep, empty, bad):
        assert r.n_valid == 0 and r.h24 == (0, None, None, None, None, 0, 0)
        assert r.dipping_sys_pct is None and r.dipping_class == "insufficient data"
        assert r.load_24h == (0, None, None, None) and r.extremes == {}
        assert not r.adequate and r.notes[0] == "no valid reading in the range"
        assert all(h.n == 0 and h.sys is None for h in r.hourly)
    assert rep.valid_pct is None and bad.valid_pct == 0.0
    assert abpm_report(readings(), "UTC", n_expected=0).valid_pct is None


def test_bad_arguments():
    r = readings()
    with pytest.raises(UsageError, match="unknown time zone"):
        abpm_report(r, "Nowhere/Special")
    with pytest.raises(UsageError, match="empty time range"):
        abpm_report(r, "UTC", t0_us=at(10), t1_us=at(10))
    with pytest.raises(UsageError, match="n_expected"):
        abpm_report(r, "UTC", n_expected=-1)
    with pytest.raises(UsageError, match="NIBPReadings"):
        abpm_report([(1, 120, 80)], "UTC")
    with pytest.raises(UsageError, match="same length"):
        NIBPReadings.from_arrays([1, 2], [120.0], [80.0, 81.0])
    with pytest.raises(UsageError, match="integer"):
        NIBPReadings.from_arrays([1.5], [120.0], [80.0])
    with pytest.raises(UsageError, match="convert string"):
        NIBPReadings.from_arrays([1], ["high"], [80.0])
    with pytest.raises(UsageError, match="out of bounds"):
        NIBPReadings.from_arrays([1], [120.0], [80.0], device_id=[-1])
    with pytest.raises(UsageError, match="overlap"):
        ABPMConfig(day=(dtime(6), dtime(22)), night=(dtime(21), dtime(7)))
    with pytest.raises(UsageError, match="two different"):
        ABPMConfig(day=(dtime(7), dtime(7)))
    with pytest.raises(UsageError, match="day_threshold"):
        ABPMConfig(day_threshold=(85, 135))
    with pytest.raises(UsageError, match="min_night"):
        ABPMConfig(min_night=0)
    with pytest.raises(UsageError, match="pulse_pressure_mmhg"):
        ValidityCriteria(pulse_pressure_mmhg=(150, 20))
    with pytest.raises(UsageError, match="columns"):
        NIBPReadings.from_numerics(pa.table({"ts_us": [1]}))


def _numerics(rows):
    cols = list(zip(*rows, strict=True))
    return pa.table({"device_id": pa.array(cols[0], pa.uint64()), "seq": pa.array(
        range(len(rows)), pa.uint32()), "ts_us": pa.array(cols[1], pa.int64()),
        "code": pa.array(cols[2], pa.uint8()), "status": pa.array(cols[3], pa.uint8()),
        "value": pa.array(cols[4], pa.float32())})


def test_readings_from_store_numerics():
    S, D, M, PR, HR = (NumericCode.NIBP_SYS, NumericCode.NIBP_DIA, NumericCode.NIBP_MAP,
                       NumericCode.NIBP_PR, NumericCode.HR)
    V, Q, U = NumericStatus.VALID, NumericStatus.QUESTIONABLE, NumericStatus.UNAVAILABLE
    t = at(9)
    table = _numerics([
        (7, t, S, V, 121), (7, t, D, V, 79), (7, t, M, V, 93), (7, t, PR, V, 66),
        (7, t, HR, V, 66),  # not NIBP: ignored
        (9, t, S, V, 140), (9, t, D, V, 90),  # another device, same time
        (7, t + 60, S, Q, 150), (7, t + 60, D, V, 95),  # questionable
        (7, t + 120, S, U, 0), (7, t + 120, D, V, 80),  # systolic unavailable
        (7, t - 60, HR, V, 70),  # no NIBP code at all: no reading
    ])
    r = NIBPReadings.from_numerics(table)
    assert len(r) == 4 and list(r.ts_us) == [t, t, t + 60, t + 120]
    assert list(r.device_id[:2]) == [7, 9]
    assert (r.sys[0], r.dia[0], r.map[0], r.pr[0]) == (121, 79, 93, 66)
    assert math.isnan(r.map[1]) and list(r.device_ok) == [True, True, False, True]
    rep = abpm_report(table, "UTC")
    assert rep.n_valid == 2 and rep.invalid["device"] == 1 and rep.invalid["missing"] == 1


reading_rows = st.lists(st.tuples(
    st.integers(0, 2 * 86_400 - 1),
    st.one_of(st.floats(0, 320), st.just(nan)),
    st.one_of(st.floats(0, 250), st.just(nan)),
    st.one_of(st.floats(0, 300), st.just(nan)),
    st.one_of(st.floats(0, 300), st.just(nan)),
    st.booleans()), max_size=80)


@settings(max_examples=200, deadline=None)
@given(rows=reading_rows, tz=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
       sleep=st.booleans(), n_expected=st.one_of(st.none(), st.integers(0, 120)))
def test_invariants_over_random_readings(rows, tz, sleep, n_expected):
    r = NIBPReadings.from_arrays([at(0) + s * 1_000_000 for s, *_ in rows],
                                 *([c[k] for c in rows] for k in range(1, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = abpm_report(r, tz, sleep=[(at(1), at(7))] if sleep else None, n_expected=n_expected)
    assert rep.n_valid + sum(rep.invalid.values()) == rep.n_readings == len(rows)
    assert rep.day.n + rep.night.n == rep.h24.n == rep.n_valid == sum(h.n for h in rep.hourly)
    valid = rep.reason == 0
    for p, sel in ((rep.day, rep.period == 1), (rep.night, rep.period == 2), (rep.h24, None)):
        s = valid if sel is None else valid & sel
        for name in ("sys", "dia"):
            m = getattr(p, name)
            assert (m is None) == (p.n == 0)
            if m is not None:
                col = getattr(rep.readings, name)[s]
                assert col.min() - 1e-9 <= m <= col.max() + 1e-9
    for load in (rep.load_day, rep.load_night, rep.load_24h):
        for v in load[1:]:
            assert v is None or 0.0 <= v <= 100.0
    if rep.valid_pct is not None:
        assert 0.0 <= rep.valid_pct <= (100.0 if n_expected is None else math.inf)
    assert rep.dipping_class in DIPPING_CLASSES
    if rep.extremes:
        assert rep.extremes["sys_min"].value <= rep.h24.sys <= rep.extremes["sys_max"].value
    c = rep.config.criteria
    vs, vd = rep.readings.sys[valid], rep.readings.dia[valid]
    assert np.all((vs >= c.sys_mmhg[0]) & (vs <= c.sys_mmhg[1]) & (vd < vs))
    assert np.all((vs - vd >= c.pulse_pressure_mmhg[0]) & (vs - vd <= c.pulse_pressure_mmhg[1]))
