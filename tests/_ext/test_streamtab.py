"""Sequence-number tracking: verdict rules, wrap-around, restarts, checkpoints, twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore import protocol as P
from vitalcore._ext.streamtab import (
    STATE_COLUMNS,
    WINDOW,
    WORDS,
    StreamTable,
    Verdict,
    stream_ids,
)
from vitalcore._refcodec import RefFrameDecoder, encode_numerics, encode_waveform
from vitalcore._refstreamtab import RefStreamTable
from vitalcore.errors import UsageError

N, G, D, L, R = (int(v) for v in Verdict)
T0 = 1_700_000_000_000_000
ECG_II = P.stream_id(P.FrameType.ECG, P.EcgLead.II)


def run(table, seqs, ts=None, device_id=7, sid=ECG_II):
    """Classify one stream's frames; ts defaults to 250 ms per frame in seq order."""
    seqs = np.asarray(seqs, np.uint32)
    if ts is None:
        ts = T0 + np.arange(len(seqs), dtype=np.int64) * 250_000
    n = len(seqs)
    return table.classify(
        np.full(n, device_id, np.uint64),
        np.full(n, sid, np.uint16),
        seqs,
        np.asarray(ts, np.int64),
    )


@pytest.fixture(params=[StreamTable, RefStreamTable], ids=["cython", "reference"])
def Table(request):
    return request.param


def test_in_order_gap_late_duplicate(Table):
    t = Table(4)
    ts = T0 + np.array([0, 1, 4, 2, 2, 4, 3, 3]) * 250_000
    idx, verdict, missing = run(t, [5, 6, 9, 7, 7, 9, 8, 8], ts)
    assert verdict.tolist() == [N, N, G, L, D, D, L, D]
    assert missing.tolist() == [0, 0, 2, 0, 0, 0, 0, 0]
    assert idx.tolist() == [0] * 8
    s = t.state()
    assert s["last_seq"].tolist() == [9]
    assert s["frames"].tolist() == [5]
    assert s["gaps"].tolist() == [1] and s["missing"].tolist() == [2]
    assert s["duplicates"].tolist() == [3] and s["late"].tolist() == [2]
    assert s["seen"].shape == (1, WORDS)
    assert s["seen"][0].tolist() == [0b11111] + [0] * (WORDS - 1)  # 9, 8, 7, 6, 5 seen


def test_streams_are_independent_and_indexed_in_order_of_appearance(Table):
    t = Table(1)
    dev = np.array([3, 3, 4, 3, 4], np.uint64)
    sid = np.array([ECG_II, 0x1000, ECG_II, ECG_II, ECG_II], np.uint16)
    seq = np.array([1, 1, 1, 2, 1], np.uint32)
    idx, verdict, _ = t.classify(dev, sid, seq, np.full(5, T0, np.int64))
    assert idx.tolist() == [0, 1, 2, 0, 2]
    assert verdict.tolist() == [N, N, N, N, D]
    assert t.lookup(4, ECG_II) == 2
    assert t.lookup(4, 0x1000) == -1


def test_wrap_around_is_in_order(Table):
    t = Table()
    top = 2**32 - 2
    ts = T0 + np.array([0, 1, 2, 3, 7, 1, 6]) * 250_000  # a retransmission keeps its ts
    _, verdict, missing = run(t, [top, top + 1, 0, 1, 5, 2**32 - 1, 4], ts)
    assert verdict.tolist() == [N, N, N, N, G, D, L]
    assert missing.tolist() == [0, 0, 0, 0, 3, 0, 0]
    _, verdict, _ = run(t, [top, 2**32 - 3], ts=[T0, T0])
    assert verdict.tolist() == [D, L]  # 7 behind 5 across the wrap: seen; 8 behind: not


def test_gap_across_wrap_counts_missing(Table):
    t = Table()
    _, verdict, missing = run(t, [2**32 - 2, 3])
    assert verdict.tolist() == [N, G]
    assert missing.tolist() == [0, 4]  # 2**32-1, 0, 1, 2


def test_half_the_sequence_space_away_counts_as_behind(Table):
    t = Table()
    _, verdict, _ = run(t, [2**31, 0], ts=[T0, T0])
    assert verdict.tolist() == [N, L]
    _, verdict, missing = run(t, [2**31 - 1 + 2**31], ts=[T0])  # 2**31 - 1 ahead of 2**31
    assert verdict.tolist() == [G]
    assert missing.tolist() == [2**31 - 2]


def test_window_edge_late_beyond_the_window_is_accepted_every_time(Table):
    assert WINDOW == 1024 and WORDS * 64 == WINDOW
    t = Table()
    seqs = [100, 100 + WINDOW + 100]  # 101 to 1223 never seen
    edge, inside = seqs[1] - WINDOW, seqs[1] - WINDOW + 1
    _, verdict, _ = run(t, seqs + [edge, inside, edge, inside],
                        ts=[T0 + 10, T0 + 20, T0, T0, T0, T0])
    # ``edge`` is WINDOW behind: outside the window, cannot be checked, so LATE both
    # times; ``inside`` is WINDOW - 1 behind: its second copy is a DUPLICATE.
    assert verdict.tolist() == [N, G, L, L, L, D]


@pytest.mark.parametrize("steps", [[1] * 300, [63, 1, 64, 65], [127, 129, 200], [1000, 23]])
def test_resend_of_a_whole_window_is_recognised_across_word_boundaries(Table, steps):
    """A reconnecting device resends up to WINDOW - 1 frames behind the newest: every
    copy is a DUPLICATE whatever the shifts were (single bits, whole words, both)."""
    t = Table()
    seqs = list(np.cumsum([5] + steps) % 2**32)
    run(t, seqs, ts=[T0 + k for k in range(len(seqs))])
    newest = seqs[-1]
    back = [newest - s for s in seqs]
    assert max(back) < WINDOW
    _, verdict, _ = run(t, seqs[::-1], ts=[T0] * len(seqs))
    assert (verdict == D).all()
    never = sorted(set(range(seqs[0], newest)) - set(seqs))[:50]  # gaps: LATE once, then D
    if never:
        _, verdict, _ = run(t, never + never, ts=[T0] * 2 * len(never))
        assert verdict.tolist() == [L] * len(never) + [D] * len(never)


def test_version_1_state_loads_into_the_low_word(Table):
    t = StreamTable()
    run(t, [1, 2, 3, 5, 400], device_id=1)
    v2 = t.state()
    v1 = {k: v for k, v in v2.items() if k != "seen"}
    v1["seen"] = v2["seen"][:, 0].copy()
    v1["version"] = np.array(1, np.int64)
    u = Table()
    u.load(v1)
    _, verdict, _ = run(u, [400, 5, 3, 4], ts=[T0] * 4, device_id=1)
    # 5 and 3 are > 63 behind: a version 1 state never knew them, so they are LATE now
    assert verdict.tolist() == [D, L, L, L]
    _, verdict, _ = run(u, [5, 3], ts=[T0] * 2, device_id=1)
    assert verdict.tolist() == [D, D]


def test_reboot_restarts_the_stream(Table):
    t = Table()
    n = 300
    run(t, np.arange(1000, 1000 + n), ts=T0 + np.arange(n) * 250_000)
    after = T0 + n * 250_000 + np.arange(n) * 250_000
    _, verdict, _ = run(t, np.arange(0, n), ts=after)
    assert verdict[0] == R
    assert (verdict[1:] == N).all()  # not duplicates, not late: a new epoch
    s = t.state()
    assert s["restarts"].tolist() == [1] and s["duplicates"].tolist() == [0]
    assert s["frames"].tolist() == [2 * n]
    # a retransmission of a new-epoch frame is recognised
    _, verdict, _ = run(t, [n - 2], ts=[after[n - 2]])
    assert verdict.tolist() == [D]


def test_reboot_to_the_same_sequence_number_with_newer_time_is_a_restart(Table):
    t = Table()
    _, verdict, _ = run(t, [7, 7, 7], ts=[T0, T0, T0 + 1])
    assert verdict.tolist() == [N, D, R]


def test_old_frames_after_a_clock_step_back_are_late_not_restart(Table):
    t = Table()
    # seq 10 at T0+100; the clock is set back 50 µs; seq 11 at T0+60; then seq 9 arrives
    _, verdict, _ = run(t, [8, 10, 11, 9], ts=[T0, T0 + 100, T0 + 60, T0 + 95])
    assert verdict.tolist() == [N, G, N, L]


def test_state_round_trip_keeps_duplicates_detectable_across_restart(Table):
    t = Table()
    run(t, [1, 2, 3, 5], device_id=1)
    run(t, [9], device_id=2)
    state = t.state()
    for Other in (StreamTable, RefStreamTable):
        u = Other()
        u.load(state)
        assert len(u) == 2
        idx, verdict, _ = run(u, [3, 4, 6], ts=[T0, T0, T0 + 10**9], device_id=1)
        assert idx.tolist() == [0, 0, 0]
        assert verdict.tolist() == [D, L, N]
        assert u.lookup(2, ECG_II) == 1


def test_state_columns_and_version():
    t = StreamTable()
    run(t, [1, 3])
    s = t.state()
    assert [k for k in s if k != "version"] == [name for name, _ in STATE_COLUMNS]
    assert s["seen"].shape == (1, WORDS)
    assert all(s[name].dtype == dt for name, dt in STATE_COLUMNS)
    assert int(s["version"]) == 2


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.__setitem__("version", np.array(3)), "version"),
        (lambda s: s.__setitem__("seen", s["seen"][:, :4].copy()), "seen must be"),
        (lambda s: s.__setitem__("seen", s["seen"][:, 0].copy()), "seen must be"),
        (lambda s: s.pop("seen"), "seen"),
        (lambda s: s.__setitem__("seq", None) or s.pop("last_seq"), "last_seq"),
        (lambda s: s.__setitem__("frames", s["frames"].astype(np.int64)), "frames"),
        (lambda s: s.__setitem__("late", s["late"][:1]), "same length"),
        (lambda s: s.__setitem__("stream_id", np.full(2, ECG_II, np.uint16)), "twice"),
        (lambda s: s.__setitem__("seen", s["seen"] & ~np.uint64(1)), "bit 0"),
    ],
)
def test_load_rejects_bad_state_and_keeps_the_table(mutate, message):
    t = StreamTable()
    run(t, [1, 2], device_id=1, sid=1)
    run(t, [5], device_id=1, sid=2)
    good = t.state()
    bad = {k: v.copy() for k, v in good.items()}
    mutate(bad)
    with pytest.raises(UsageError, match=message):
        t.load(bad)
    after = t.state()
    assert all(np.array_equal(good[k], after[k]) for k in good)
    _, verdict, _ = run(t, [2], device_id=1, sid=1)
    assert verdict.tolist() == [D]


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros(2, np.int64), np.zeros(2, np.uint16), np.zeros(2, np.uint32), np.zeros(2, np.int64)), "device_id"),
        ((np.zeros(2, np.uint64), np.zeros(2, np.uint8), np.zeros(2, np.uint32), np.zeros(2, np.int64)), "stream_id"),
        ((np.zeros(2, np.uint64), np.zeros(2, np.uint16), np.zeros(2, np.int32), np.zeros(2, np.int64)), "seq"),
        ((np.zeros(2, np.uint64), np.zeros(2, np.uint16), np.zeros(2, np.uint32), np.zeros(3, np.int64)), "same length"),
        ((np.zeros((2, 1), np.uint64), np.zeros(2, np.uint16), np.zeros(2, np.uint32), np.zeros(2, np.int64)), "1-D"),
    ],
)
def test_classify_rejects_bad_columns_without_touching_state(args, message):
    t = StreamTable()
    run(t, [1])
    with pytest.raises(UsageError, match=message):
        t.classify(*args)
    assert len(t) == 1 and t.state()["frames"].tolist() == [1]


def test_capacity_grows_far_past_the_hint_and_lookup_finds_every_stream():
    t = StreamTable(0)
    n = 40_000
    dev = np.repeat(np.arange(1, n // 4 + 1, dtype=np.uint64) * 0x1_0000_0001, 4)
    sid = np.tile(np.array([0x101, 0x102, 0x200, 0x201], np.uint16), n // 4)
    idx, verdict, _ = t.classify(dev, sid, np.zeros(n, np.uint32), np.full(n, T0, np.int64))
    assert len(t) == n and (verdict == N).all() and np.array_equal(idx, np.arange(n))
    idx2, verdict2, _ = t.classify(dev[::-1].copy(), sid[::-1].copy(), np.ones(n, np.uint32), np.full(n, T0, np.int64))
    assert np.array_equal(idx2, np.arange(n)[::-1]) and (verdict2 == N).all()
    assert t.lookup(int(dev[12345]), int(sid[12345])) == 12345
    assert t.totals() == {
        "streams": n, "frames": 2 * n, "gaps": 0, "missing": 0, "duplicates": 0, "late": 0, "restarts": 0
    }


def test_classify_batch_uses_frame_type_and_channel():
    frames = [
        encode_waveform(P.FrameType.ECG, 5, 1, T0, 1, np.arange(10), 250, 2.5),
        encode_waveform(P.FrameType.ECG, 5, 1, T0, 2, np.arange(10), 250, 2.5),
        encode_numerics(5, 1, T0, [(P.NumericCode.HR, 60.0)]),
        encode_waveform(P.FrameType.ECG, 5, 1, T0, 1, np.arange(10), 250, 2.5),
    ]
    batch = RefFrameDecoder().decode(b"".join(frames))
    t = StreamTable()
    idx, verdict, _ = t.classify_batch(batch)
    assert idx.tolist() == [0, 1, 2, 0]
    assert verdict.tolist() == [N, N, N, D]
    assert t.lookup(5, P.stream_id(P.FrameType.NUMERICS, 0)) == 2
    assert stream_ids(np.array([1, 0x10], np.uint8), np.array([2, 0], np.uint8)).tolist() == [
        0x102,
        0x1000,
    ]


# -- equivalence with the reference twin --------------------------------------------------
_frame = st.tuples(
    st.integers(0, 3),  # stream
    st.one_of(  # seq step relative to the stream's running counter
        st.sampled_from([1, 1, 1, 1, 0, -1, 2]),
        st.integers(-70, 70),
        st.integers(-1100, 1100),
        st.integers(-(2**32), 2**32),
    ),
    st.integers(-3, 5),  # ts step (µs x 100k)
)


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from([0, 1000, 2**31 - 5, 2**32 - 40]),
    frames=st.lists(_frame, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=4),
    reload_at=st.one_of(st.none(), st.integers(0, 5)),
)
def test_equivalent_to_reference_twin(start, frames, cuts, reload_at):
    counters = [start] * 4
    clocks = [T0] * 4
    dev, sid, seq, ts = [], [], [], []
    for s, step, dt in frames:
        counters[s] = (counters[s] + step) % 2**32
        clocks[s] += dt * 100_000
        dev.append(1 + s // 2)
        sid.append(ECG_II + s % 2)
        seq.append(counters[s])
        ts.append(clocks[s])
    cols = (
        np.array(dev, np.uint64),
        np.array(sid, np.uint16),
        np.array(seq, np.uint32),
        np.array(ts, np.int64),
    )
    fast, ref = StreamTable(1), RefStreamTable(1)
    bounds = sorted({0, len(dev), *(c for c in cuts if c <= len(dev))})
    fast_state = fast.state()
    for b, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if reload_at == b:  # a restart of the store between two batches
            fast, ref = StreamTable(), RefStreamTable()
            fast.load(fast_state)
            ref.load(fast_state)
        part = tuple(c[lo:hi] for c in cols)
        got, want = fast.classify(*part), ref.classify(*part)
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w)
        fast_state = fast.state()
        ref_state = ref.state()
        for k in fast_state:
            assert np.array_equal(fast_state[k], ref_state[k]), k
