"""Engine state as columns: each equals the per-row Python it replaces."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.alarms.columns import DeviceIndex, LatestNumerics, PlethFrames

rows = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10), st.integers(0, 255),
                          st.floats(-1e6, 1e6)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(rows, max_size=5))
def test_latest_numerics_equal_the_dict_update(batches):
    """Newest by device time, ties to the later row: what _Device.latest kept."""
    cols = LatestNumerics()
    ref: dict[int, dict[int, tuple[int, float]]] = {}
    for batch in batches:
        for s, ts, code, v in batch:
            prev = ref.setdefault(s, {}).get(code)
            if prev is None or ts >= prev[0]:
                ref[s][code] = (ts, v)
        a = np.array(batch, dtype=object).reshape(-1, 4)
        cols.update(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64),
                    a[:, 2].astype(np.uint8), a[:, 3].astype(np.float64), 6)
    for s in range(6):
        assert cols.of(s) == ref.get(s, {})
    cols.clear(2)
    assert cols.of(2) == {} and cols.of(99) == {}


frames = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 300)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(fr=frames, per_batch=st.integers(1, 7))
def test_pleth_frames_equal_a_deque_per_device(fr, per_batch):
    """The last k frames of each slot, samples intact, as the per-device deque held them;
    frames whose samples the ring overwrote are left out, never returned corrupt."""
    k, cap = 5, 512
    cols = PlethFrames(k, ring=cap)
    ref = {s: deque(maxlen=k) for s in range(4)}
    rng = np.random.default_rng(len(fr))
    for i in range(0, len(fr), per_batch):
        part = fr[i:i + per_batch]
        samples = rng.integers(-3000, 3000, sum(n for _, n in part)).astype(np.int16)
        start = np.cumsum([0] + [n for _, n in part])[:-1]
        slots = np.array([s for s, _ in part], np.int64)
        ts = np.arange(len(part), dtype=np.int64) + 1000 * i
        n = np.array([m for _, m in part], np.int64)
        cols.add(slots, ts, np.full(len(part), 100), np.full(len(part), 1.5),
                 np.full(len(part), -2.0), samples, start, n, 4)
        for j, (s, m) in enumerate(part):
            ref[s].append((int(ts[j]), samples[start[j]:start[j] + m].copy(), 1.5, -2.0, 100))
    for s in range(4):
        got = cols.frames_of(s)
        want = list(ref[s])
        total = sum(m for _, m in (f for f in fr if f[0] == s))
        # a frame is kept iff its samples are still within the newest `cap` of the slot
        kept, end = [], total
        for f in reversed(want):
            if end - f[1].size >= total - cap:
                kept.append(f)
            end -= f[1].size
        kept.reverse()
        assert [g[0] for g in got] == [w[0] for w in kept]
        for g, w in zip(got, kept, strict=True):
            np.testing.assert_array_equal(g[1], w[1])
            assert g[2:] == w[2:]


def test_device_index_lookup_add_remove_reuse():
    ix = DeviceIndex()
    assert ix.lookup(np.array([5], np.uint64)).tolist() == [-1]
    a, b = ix.add(2**63 + 5), ix.add(7)
    assert ix.add(7) == b and ix.size == 2
    assert ix.lookup(np.array([7, 2**63 + 5, 8], np.uint64)).tolist() == [b, a, -1]
    assert ix.remove(7) == b and ix.remove(7) is None
    assert ix.lookup(np.array([7], np.uint64)).tolist() == [-1]
    assert ix.add(9) == b and ix.size == 2  # the freed slot is reused


def test_columns_reject_inconsistent_input_and_skip_unknown_devices():
    from vitalcore.errors import UsageError

    cols = LatestNumerics()
    with pytest.raises(UsageError, match="one length"):
        cols.update(np.array([0, 1]), np.array([1]), np.array([1]), np.array([1.0]), 2)
    with pytest.raises(UsageError, match="slots must be within"):
        cols.update(np.array([2]), np.array([1]), np.array([1]), np.array([1.0]), 2)
    cols.update(np.array([-1, 1]), np.array([5, 6]), np.array([3, 3]), np.array([1.0, 2.0]), 2)
    assert cols.of(1) == {3: (6, 2.0)} and cols.of(0) == {}
    pf = PlethFrames(4, ring=64)
    one = (np.array([100]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(UsageError, match="out of range"):
        pf.add(np.array([0]), np.array([1]), *one, np.zeros(10, np.int16), np.array([5]),
               np.array([10]), 1)
    pf.add(np.array([-1]), np.array([1]), *one, np.zeros(10, np.int16), np.array([0]),
           np.array([10]), 1)
    assert pf.frames_of(0) == []
