"""SLA clocks: escalation on a fake clock, persistence, contracts, and the clock state
machine under hypothesis (pure functions and a desk driven by random steps)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from service_world import DEVICES, LOG2_N, MIN, ROOT, T0

from vitalcore.clinical import FakeClock, Resource, Role, open_store
from vitalcore.errors import ConfigError
from vitalcore.service import (
    CallbackNotifier,
    ClockState,
    DeskConfig,
    Milestone,
    OrderRequest,
    OrderStatus,
    ServiceDesk,
    SlaPolicy,
    clock_state,
)

S = 1_000_000


def _order(world, **kw):
    return world.desk.create_order("nurse1", OrderRequest(DEVICES[1], "no SpO2", "ext 1",
                                                          ward_id="W1", **kw))


def test_escalation_fires_on_the_fake_clock_once_per_clock(world):
    d, c = world.desk, world.clock
    o = _order(world, severity="serious")
    c.advance(299)
    assert not world.kinds("escalated")
    c.advance(2)  # past the 5 min respond limit
    esc = world.kinds("escalated")
    assert [(n.milestone, n.targets, n.order_id) for n in esc] == [
        (Milestone.RESPOND, ("team/biomed", "service/lead"), o.order_id)]
    assert esc[0].at_us == o.reported_us + 300 * S + 1
    d.respond("biomed", o.order_id)  # late: no second escalation of the same clock
    c.advance(30 * 60)
    assert [n.milestone for n in world.kinds("escalated")] == [Milestone.RESPOND,
                                                                Milestone.ON_SITE]
    assert d.tick() == [] and len(d.escalations(o.order_id)) == 2
    views = {v.milestone: v.state for v in d.clocks(o.order_id)}
    assert views[Milestone.RESPOND] is ClockState.LATE
    assert views[Milestone.NOTIFY] is ClockState.MET
    assert views[Milestone.ON_SITE] is ClockState.BREACHED
    # a restarted desk on the same database repeats nothing
    again = ServiceDesk(world.store.db, clock=c, notifier=CallbackNotifier(world.notices.append))
    assert again.tick() == []
    assert "escalated" in [e.kind for e in d.order_events(o.order_id)]


def test_contracts_are_configurable(sqlite_world):
    w = sqlite_world
    w.desk.config = DeskConfig(contracts={
        "standard": SlaPolicy(), "icu": SlaPolicy(respond_s=120, escalate_to=("icu/head",))})
    o = _order(w, contract="icu")
    assert o.sla_s[Milestone.RESPOND] == 120
    w.clock.advance(121)
    assert [(n.milestone, n.targets) for n in w.kinds("escalated")] == [
        (Milestone.RESPOND, ("team/biomed", "icu/head"))]


def test_cancelled_orders_stop_their_clocks(sqlite_world):
    w = sqlite_world
    o = _order(w)
    w.desk.cancel("biomed", o.order_id, "reported twice")
    w.clock.advance(2 * 86400)
    assert not w.kinds("escalated") and w.desk.tick() == []


@pytest.mark.parametrize("kw", [dict(respond_s=30), dict(fix_s=0), dict(notify_s=1.5),
                                dict(resolve_s=10**9), dict(escalate_to=["x"])])
def test_bad_policies_are_refused(kw):
    with pytest.raises(ConfigError):
        SlaPolicy(**kw)


# -- the pure clock --------------------------------------------------------------------------
times = st.integers(0, 10**12)


@given(deadline=times, done=st.none() | times, t1=times, t2=times)
@settings(max_examples=150, deadline=None)
def test_clock_state_is_monotone_and_final(deadline, done, t1, t2):
    a, b = sorted((t1, t2))
    s1, s2 = clock_state(deadline, done, a), clock_state(deadline, done, b)
    final = {ClockState.MET, ClockState.LATE}
    if s1 in final:
        assert s2 is s1  # a reached milestone never changes its verdict
    if s1 is ClockState.BREACHED:
        assert s2 in (ClockState.BREACHED, ClockState.LATE)
    if done is not None and done <= b:
        assert s2 is (ClockState.MET if done <= deadline else ClockState.LATE)
    if done is None or done > b:
        assert s2 is (ClockState.RUNNING if b <= deadline else ClockState.BREACHED)


# -- a desk under random steps ---------------------------------------------------------------
def _small_desk():
    clock = FakeClock(T0 + MIN)
    store = open_store(":memory:", log2_n=LOG2_N, clock=clock.now_us)
    store.bootstrap_administrator(ROOT, "pw", at_us=T0)
    store.create_hospital(ROOT, "H1", "H", at_us=T0)
    store.create_campus(ROOT, "C1", "H1", "C", at_us=T0)
    store.create_ward(ROOT, "W1", "C1", "W", at_us=T0)
    store.register_device(ROOT, DEVICES[0], "VC-W1", "H1", at_us=T0)
    for user, role, scope in (("biomed", Role.BIOMEDICAL_ENGINEER, Resource.everything()),
                              ("nurse1", Role.WARD_NURSE, Resource.ward("W1"))):
        store.create_user(ROOT, user, "pw", at_us=T0)
        store.grant_role(ROOT, user, role, scope, at_us=T0)
    notices = []
    desk = ServiceDesk(store.db, clock=clock, notifier=CallbackNotifier(notices.append))
    return store, desk, clock, notices


class SlaMachine(RuleBasedStateMachine):
    """Random waits and steps on one order; the escalations sent must be exactly the
    clocks that ran out, each once, whatever the interleaving."""

    def __init__(self) -> None:
        super().__init__()
        self.store, self.desk, self.clock, self.notices = _small_desk()
        self.oid = self.desk.create_order(
            "nurse1", OrderRequest(DEVICES[0], "flat ECG", "ext 2", ward_id="W1")).order_id

    def teardown(self) -> None:
        self.store.close()

    @property
    def status(self) -> OrderStatus:
        return self.desk.order(self.oid).status

    @rule(seconds=st.sampled_from([0, 1, 59, 60, 61, 240, 299, 300, 1500, 3600, 7200, 80000]))
    def wait(self, seconds):
        self.clock.advance(seconds)

    @precondition(lambda self: self.status is OrderStatus.OPEN)
    @rule()
    def respond(self):
        self.desk.respond("biomed", self.oid)

    @precondition(lambda self: self.status is OrderStatus.RESPONDED)
    @rule(remote=st.booleans())
    def start(self, remote):
        self.desk.start_work("biomed", self.oid, remote=remote)

    @precondition(lambda self: self.status is OrderStatus.IN_PROGRESS)
    @rule()
    def fix(self):
        self.desk.mark_fixed("biomed", self.oid, "fixed")

    @precondition(lambda self: self.status is OrderStatus.FIXED)
    @rule(passed=st.booleans())
    def verify(self, passed):
        self.desk.verify("biomed", self.oid, passed, "REF-1")

    @precondition(lambda self: self.status is OrderStatus.VERIFIED)
    @rule()
    def sign_off_and_close(self):
        self.desk.sign_off("nurse1", self.oid)
        self.desk.close("biomed", self.oid)

    @rule()
    def tick(self):
        self.desk.tick()

    @invariant()
    def escalations_match_the_clocks(self):
        self.clock.advance(0)  # run a timer armed in the past by the last step
        o = self.desk.order(self.oid)
        now = self.clock.now_us()
        fired = {m for m, *_ in self.desk.escalations(self.oid)}
        sent = [n.milestone.value for n in self.notices if n.kind == "escalated"]
        assert sorted(sent) == sorted(fired)  # each escalation notified once
        for v in self.desk.clocks(o, now):
            if v.state in (ClockState.BREACHED, ClockState.LATE):
                # ran out while the order was active → escalated (a closed order stops)
                assert v.milestone.value in fired or o.status is OrderStatus.CLOSED
            if v.milestone.value in fired:
                assert v.state in (ClockState.BREACHED, ClockState.LATE)
                first = next(f for m, _, f, _ in self.desk.escalations(self.oid)
                             if m == v.milestone.value)
                assert first > v.deadline_us  # never before the deadline


TestSlaMachine = SlaMachine.TestCase
TestSlaMachine.settings = settings(max_examples=20, stateful_step_count=12, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
