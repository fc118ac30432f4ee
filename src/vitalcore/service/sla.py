"""SLA clocks of the service contracts: limits, the state of one clock, due escalations.

Every clock of an order starts at the report time and has a limit from the order's
contract (:class:`SlaPolicy`; defaults from the hospitals' contracts: notify 1 min,
respond 5 min, on site or remote 30 min, fixed 2 h, fault removed 24 h). A clock is

- ``running`` while its milestone is not reached and the deadline not passed;
- ``met`` when the milestone was reached at or before the deadline;
- ``breached`` when the deadline passed without it (the clock escalates once);
- ``late`` when the milestone was reached after the deadline.

``deadline = reported_us + limit``; reaching the milestone exactly at the deadline
meets it. These are pure functions of the times: the desk persists the times and the
escalations already sent, so a restart neither loses nor repeats an escalation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from ..errors import ConfigError
from .model import Milestone

__all__ = ["SlaPolicy", "ClockState", "ClockView", "clock_state", "clock_views",
           "breached_milestones", "DEFAULT_CONTRACT"]

DEFAULT_CONTRACT = "standard"
_MAX_LIMIT_S = 90 * 86400


class ClockState(StrEnum):
    RUNNING = "running"
    MET = "met"
    BREACHED = "breached"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The limits of one contract, in seconds from the report time.

    They must not decrease along the milestones (a fix cannot be due before the
    response). ``escalate_to`` names who hears about a breach besides the order's team.
    """

    notify_s: int = 60
    respond_s: int = 300
    on_site_s: int = 1800
    fix_s: int = 7200
    resolve_s: int = 86400
    escalate_to: tuple[str, ...] = ("service/lead",)

    def __post_init__(self) -> None:
        prev = 0
        for m in Milestone:
            v = getattr(self, f"{m.value}_s")
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= _MAX_LIMIT_S:
                raise ConfigError(f"{m.value}_s must be whole seconds in 1..{_MAX_LIMIT_S}, "
                                  f"got {v!r}")
            if v < prev:
                raise ConfigError(f"SLA limits must not decrease along {list(Milestone)}: "
                                  f"{m.value}_s={v} < {prev}")
            prev = v
        if not isinstance(self.escalate_to, tuple) or not all(
                isinstance(t, str) and t for t in self.escalate_to):
            raise ConfigError("escalate_to must be a tuple of non-empty target names")

    def limits(self) -> dict[Milestone, int]:
        """Milestone → limit in s."""
        return {m: getattr(self, f"{m.value}_s") for m in Milestone}


def clock_state(deadline_us: int, done_us: int | None, now_us: int) -> ClockState:
    """The state of one clock at ``now_us`` (see the module docstring)."""
    if done_us is not None and done_us <= now_us:
        return ClockState.MET if done_us <= deadline_us else ClockState.LATE
    return ClockState.RUNNING if now_us <= deadline_us else ClockState.BREACHED


class ClockView(NamedTuple):
    """One clock of an order for display: ``remaining_s`` is negative once overdue."""

    milestone: Milestone
    deadline_us: int
    done_us: int | None
    state: ClockState
    remaining_s: int


def clock_views(reported_us: int, limits_s: Mapping[Milestone, int],
                done: Mapping[Milestone, int | None], now_us: int) -> list[ClockView]:
    """Every clock of an order at ``now_us``, in milestone order."""
    out = []
    for m in Milestone:
        deadline = reported_us + limits_s[m] * 1_000_000
        d = done.get(m)
        end = d if d is not None else now_us
        out.append(ClockView(m, deadline, d, clock_state(deadline, d, now_us),
                             (deadline - end) // 1_000_000))
    return out


def breached_milestones(reported_us: int, limits_s: Mapping[Milestone, int],
                        done: Mapping[Milestone, int | None], now_us: int,
                        already: Iterable[Milestone] = ()) -> list[Milestone]:
    """Milestones whose clock is breached at ``now_us`` and not yet escalated.

    A clock met late (reached after its deadline) counts too: its breach happened even
    if nobody looked at the desk between the deadline and the late completion.
    """
    sent = set(already)
    out = []
    for v in clock_views(reported_us, limits_s, done, now_us):
        if v.milestone not in sent and v.state in (ClockState.BREACHED, ClockState.LATE):
            out.append(v.milestone)
    return out
