"""Hour accounting: turn a stream of cumulative powered-on counters into credited hours.

Pure state machine, no I/O (the tracker persists :class:`CounterState` in the database).
Each STATUS frame reports, per terminal and per accessory, a cumulative powered-on
counter in seconds (protocol.md §6): the terminal's own, and each accessory's own
(it moves with the accessory between terminals). :func:`observe` folds one reading
``(raw_s, ts_us, source)`` into the state, where ``source`` is the device id of the
terminal that reported it, and returns the seconds credited.

Rules (``last`` is the last accepted reading):

- **first reading**: the counter's value is the opening balance (hours the asset had
  before it was first seen) and is credited whole.
- **stale**: not newer than ``last`` (``ts_us <= last.ts_us``), from whichever
  terminal: ignored (a retransmission, a frame delivered out of order, the
  store-and-forward backlog of a terminal the accessory has left). Nothing is lost by
  ignoring one: counters are cumulative, so the next newer reading credits it.
- **forward**: ``raw_s >= last.raw_s``: the difference is credited (also across a move
  to another terminal).
- **reset**: the counter went backwards, reported by the same terminal at a newer time:
  the device (or accessory) reset its counter. Credited: ``min(raw_s, elapsed)`` with
  ``elapsed`` the device time since ``last``; the counter restarts from ``raw_s``. So a
  reset never credits more than the time that passed, and loses at most the time
  between the last report before the reset and the reset itself (one status interval).
- **suspect**: the counter went backwards but the reading comes from another terminal
  than ``last``. That is either a late frame from the terminal the accessory left (not
  to be counted: it would count the same hours twice) or a reset that happened with the
  move. It is held, not credited; if the next reading from that same terminal is again
  below ``last`` and not below the held one, the reset is confirmed and credited like
  one; a forward reading clears it.

Invariants (tested with hypothesis): the total never decreases; with truthful
counters and synchronised device clocks it never exceeds the true powered-on time
(nothing is counted twice across moves, duplicates or reorders), and without resets it
equals the newest counter value. Device clocks are assumed synchronised (the server sets
them with ``SET_TIME``); a clock running behind makes a terminal's readings stale until
it passes the last accepted time, which delays credit but loses none.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import UsageError

__all__ = ["CounterState", "Outcome", "Credit", "observe", "rebase", "REBASED_RAW"]

#: Sentinel ``raw_s`` after :func:`rebase`: above any u32 counter, so the next reading
#: from the new source is a reset from that source.
REBASED_RAW = 1 << 32

_MAX_RAW = (1 << 32) - 1


class Outcome(StrEnum):
    FIRST = "first"
    FORWARD = "forward"
    STALE = "stale"
    RESET = "reset"
    SUSPECT = "suspect"


@dataclass
class CounterState:
    """The accounting state of one asset's counter.

    Attributes
    ----------
    total_s : int
        Seconds credited so far.
    raw_s, ts_us, source : int or None
        The last accepted reading (None before the first).
    resets : int
        Resets credited so far.
    pending_source, pending_raw_s, pending_ts_us : int or None
        A held suspect reading.
    """

    total_s: int = 0
    raw_s: int | None = None
    ts_us: int | None = None
    source: int | None = None
    resets: int = 0
    pending_source: int | None = None
    pending_raw_s: int | None = None
    pending_ts_us: int | None = None


@dataclass(frozen=True)
class Credit:
    """What one reading did: its ``outcome`` and the seconds credited (>= 0)."""

    outcome: Outcome
    seconds: int
    previous_raw_s: int | None


def _check(raw_s: int, ts_us: int, source: int) -> None:
    for name, v, hi in (("raw_s", raw_s, _MAX_RAW), ("ts_us", ts_us, (1 << 63) - 1),
                        ("source", source, (1 << 64) - 1)):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise UsageError(f"{name} must be an int in 0..{hi}, got {v!r}")


def observe(state: CounterState, raw_s: int, ts_us: int, source: int) -> Credit:
    """Fold one reading into ``state`` (changed in place); the seconds it credits.

    Parameters
    ----------
    state : CounterState
    raw_s : int
        The cumulative counter reported, s (u32).
    ts_us : int
        Device time of the STATUS frame, µs since the epoch.
    source : int
        Device id of the terminal that reported it.
    """
    _check(raw_s, ts_us, source)
    s = state
    if s.raw_s is None or s.ts_us is None:
        s.total_s, s.raw_s, s.ts_us, s.source = raw_s, raw_s, ts_us, source
        return Credit(Outcome.FIRST, raw_s, None)
    prev = s.raw_s
    if ts_us <= s.ts_us:
        return Credit(Outcome.STALE, 0, prev)
    if raw_s >= prev:
        return _accept(s, raw_s, ts_us, source, raw_s - prev, Outcome.FORWARD, prev)
    if source != s.source:
        held = s.pending_source == source and s.pending_raw_s is not None
        if not (held and raw_s >= s.pending_raw_s and ts_us > (s.pending_ts_us or 0)):
            s.pending_source, s.pending_raw_s, s.pending_ts_us = source, raw_s, ts_us
            return Credit(Outcome.SUSPECT, 0, prev)
    elapsed_s = max(0, ts_us - s.ts_us) // 1_000_000
    s.resets += 1
    return _accept(s, raw_s, ts_us, source, min(raw_s, elapsed_s), Outcome.RESET, prev)


def _accept(s: CounterState, raw_s: int, ts_us: int, source: int, credit: int,
            outcome: Outcome, prev: int) -> Credit:
    s.total_s += credit
    s.raw_s, s.ts_us, s.source = raw_s, ts_us, source
    s.pending_source = s.pending_raw_s = s.pending_ts_us = None
    return Credit(outcome, credit, None if prev >= REBASED_RAW else prev)


def rebase(state: CounterState, source: int) -> None:
    """The asset now reports through ``source`` with a fresh counter (a terminal
    re-provisioned under a new device id, a replaced mainboard): the next reading from
    ``source`` is credited as after a reset. Hours already credited stay."""
    state.raw_s = REBASED_RAW if state.raw_s is not None else None
    state.source = source
    state.pending_source = state.pending_raw_s = state.pending_ts_us = None
