"""Hour accounting (vitalcore.fleet.accounting): rules one by one, then hypothesis over
simulated lives of an accessory moving between terminals with resets, duplicates,
late frames and store-and-forward backlogs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.fleet.accounting import CounterState, Outcome, observe, rebase

S = 1_000_000  # µs per s
T0 = 1_764_115_200 * S
A, B, C = 0xA, 0xB, 0xC


def test_first_reading_is_the_opening_balance():
    s = CounterState()
    c = observe(s, 5000, T0, A)
    assert (c.outcome, c.seconds, s.total_s) == (Outcome.FIRST, 5000, 5000)


def test_forward_stale_and_reset_from_the_same_terminal():
    s = CounterState()
    observe(s, 100, T0, A)
    assert observe(s, 110, T0 + 10 * S, A).seconds == 10
    stale = observe(s, 105, T0 + 5 * S, A)  # a late frame: ignored, not a reset
    assert (stale.outcome, stale.seconds) == (Outcome.STALE, 0)
    assert observe(s, 110, T0 + 10 * S, A).outcome is Outcome.STALE  # a retransmission
    reset = observe(s, 7, T0 + 20 * S, A)  # counter restarted: 7 s since, 10 s elapsed
    assert (reset.outcome, reset.seconds, reset.previous_raw_s) == (Outcome.RESET, 7, 110)
    assert (s.total_s, s.resets) == (117, 1)
    assert observe(s, 17, T0 + 30 * S, A).seconds == 10


def test_reset_never_credits_more_than_the_elapsed_time():
    s = CounterState()
    observe(s, 1000, T0, A)
    c = observe(s, 900, T0 + 30 * S, A)  # garbage after a reset: 900 s in 30 s is impossible
    assert (c.outcome, c.seconds) == (Outcome.RESET, 30)


def test_lower_counter_from_another_terminal_is_held_then_confirmed():
    s = CounterState()
    observe(s, 1000, T0, A)
    held = observe(s, 5, T0 + 20 * S, B)  # moved and reset, or a twin: not credited yet
    assert (held.outcome, held.seconds, s.total_s) == (Outcome.SUSPECT, 0, 1000)
    confirmed = observe(s, 15, T0 + 30 * S, B)
    assert (confirmed.outcome, confirmed.seconds) == (Outcome.RESET, 15)
    assert observe(s, 25, T0 + 40 * S, B).seconds == 10


def test_forward_reading_clears_a_held_one():
    s = CounterState()
    observe(s, 1000, T0, A)
    observe(s, 5, T0 + 10 * S, B)
    assert observe(s, 1020, T0 + 20 * S, A).seconds == 20
    assert s.pending_source is None


def test_move_keeps_the_accessory_counter():
    s = CounterState()
    observe(s, 1000, T0, A)
    assert observe(s, 1600, T0 + 700 * S, B).seconds == 600  # 100 s unpowered in between


def test_rebase_credits_a_fresh_counter_as_after_a_reset():
    s = CounterState()
    observe(s, 50_000, T0, A)
    rebase(s, B)
    c = observe(s, 40, T0 + 60 * S, B)
    assert (c.outcome, c.seconds, s.total_s) == (Outcome.RESET, 40, 50_040)


@pytest.mark.parametrize("raw, ts, src", [(-1, T0, A), (1 << 32, T0, A), (1.5, T0, A),
                                          (True, T0, A), (1, -1, A), (1, T0, -1), (1, T0, None)])
def test_bad_readings_are_usage_errors(raw, ts, src):
    s = CounterState()
    with pytest.raises(UsageError):
        observe(s, raw, ts, src)
    assert s == CounterState()


# -- hypothesis: a simulated life ---------------------------------------------------------

_step = st.tuples(
    st.sampled_from(["report", "report", "report", "move", "reset", "dup", "late", "off"]),
    st.integers(1, 120),  # seconds of device time the step takes
)


@settings(max_examples=200, deadline=None)
@given(opening=st.integers(0, 10**7), steps=st.lists(_step, min_size=1, max_size=60),
       backlog=st.booleans())
def test_credited_hours_never_exceed_the_truth(opening, steps, backlog):
    """Truthful counters on synchronised clocks: the total is monotonic, never above the
    true powered-on time, equal to it without resets; a reset loses at most the powered
    time between the last accepted report and the reset, plus, if the counter regrew
    past its old value before the next report (a reset nobody can see), that value."""
    s = CounterState()
    t, counter, true_total, terminal = T0, opening, opening, A
    sent: list[tuple[int, int, int]] = []  # every report made: (raw, ts, source)
    lost_bound, since_report = 0, 0
    unseen_from: int | None = None  # last accepted raw before resets not yet detected
    resets = 0

    def deliver(raw: int, ts: int, src: int) -> None:
        nonlocal lost_bound, unseen_from
        before = s.total_s
        c = observe(s, raw, ts, src)
        assert c.seconds >= 0 and s.total_s == before + c.seconds
        if unseen_from is not None and c.outcome is Outcome.RESET:
            unseen_from = None
        elif unseen_from is not None and c.outcome is Outcome.FORWARD:
            lost_bound += unseen_from  # the counter regrew past its old value unseen
            unseen_from = None

    deliver(counter, t, terminal)
    sent.append((counter, t, terminal))
    accepted_truth = true_total
    for action, dt in steps:
        t += dt * S
        if action != "off":
            counter += dt
            true_total += dt
            since_report += dt
        if action == "move":
            terminal = {A: B, B: C, C: A}[terminal]
        elif action == "reset":
            lost_bound += since_report
            since_report = 0
            resets += 1
            counter = 0
            if unseen_from is None:
                unseen_from = s.raw_s
        elif action == "late" and len(sent) > 1:
            deliver(*sent[len(sent) // 2])  # an old frame arrives again, late: stale
            continue
        elif action == "dup":
            deliver(*sent[-1])  # a retransmission: stale
            continue
        if action in ("report", "move", "off") or (action == "reset" and not backlog):
            sent.append((counter, t, terminal))
            deliver(counter, t, terminal)
            if s.ts_us == t:  # accepted (not held as suspect)
                accepted_truth = true_total
                since_report = 0
    if backlog:  # the whole history again, as a store-and-forward upload would send it
        total = s.total_s
        for report in sent:
            deliver(*report)
        assert s.total_s == total
    assert s.total_s <= accepted_truth
    if resets == 0:
        assert s.total_s == accepted_truth
    assert s.total_s >= accepted_truth - lost_bound
