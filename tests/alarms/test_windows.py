from __future__ import annotations

import numpy as np
from alarm_helpers import START

from vitalcore.alarms.windows import NumericWindow, WaveRing


def test_ring_places_by_device_time():
    r = WaveRing(seconds=1.0, max_fill_s=0.5)
    assert r.feed(START, np.arange(50, dtype=np.float32), 100).restarted
    res = r.feed(START + 500_000, np.arange(50, dtype=np.float32), 100)  # on time
    assert res.gap_s == 0 and not res.restarted and r.n == 100
    res = r.feed(START + 1_200_000, np.ones(10, np.float32), 100)  # 0.2 s hole
    assert res.gap_s == 0.2 and len(res.samples) == 30 and np.isnan(res.samples[:20]).all()
    start, last = r.last(0.3)
    assert len(last) == 30 and np.isnan(last[:20]).all() and (last[20:] == 1).all()
    assert start == r.time_of(r.n - 30)
    assert r.feed(START, np.ones(5, np.float32), 100).late  # a retry of old data
    assert r.feed(START + 3_000_000, np.ones(5, np.float32), 100).restarted  # hole > 0.5 s
    assert r.n == 5
    assert r.feed(START + 3_050_000, np.ones(5, np.float32), 250).restarted  # new fs


def test_ring_wraps_and_keeps_order():
    r = WaveRing(seconds=1.0)
    for k in range(7):
        r.feed(START + k * 250_000, np.arange(k * 25, k * 25 + 25, dtype=np.float32), 100)
    _, last = r.last()
    np.testing.assert_array_equal(last, np.arange(75, 175, dtype=np.float32))
    big = np.arange(500, dtype=np.float32)  # one frame longer than the ring
    r.feed(START + 7 * 250_000, big, 100)
    np.testing.assert_array_equal(r.last()[1], big[-100:])


def test_numeric_window():
    w = NumericWindow(rows=4)
    for i in range(6):
        w.add(START + i, 1, 0, 60.0 + i)
    w.add(START + 10, 3, 2, float("nan"))  # UNAVAILABLE: kept as a row, not as latest
    w.add(START + 2, 1, 0, 99.0)  # older than the latest: a row, not the latest
    cols = w.columns()
    assert cols["value"].tolist()[:2] == [64.0, 65.0] and len(cols["ts_us"]) == 4
    assert w.latest == {1: (START + 5, 65.0)}
