"""Work orders: intake, the steps to closing, refusals, photos; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from service_world import DEVICES, JPEG, MIN, PNG, ROOT, T0

from vitalcore.errors import AccessDenied, UsageError
from vitalcore.service import (
    Assigner,
    AssignmentRule,
    Channel,
    DeskConfig,
    Milestone,
    OrderRequest,
    OrderStatus,
    RequestType,
    Severity,
)
from vitalcore.service.sla import ClockState

DEV = DEVICES[1]


def _counts(world) -> tuple[int, ...]:
    with world.store.db.transaction(write=False) as tx:
        return tuple(tx.scalar(f"SELECT COUNT(*) FROM {t}") for t in (
            "svc_orders", "svc_order_events", "svc_photos", "svc_escalations", "role_grants",
            "svc_associations", "svc_records"))


def _audit(world, action: str) -> list:
    return [e for e in world.store.audit_log(ROOT, 0, 2**62) if e.action == action]


def _req(**kw) -> OrderRequest:
    base = dict(device_id=DEV, description="no ECG trace on the central screen",
                contact="nurse1, ext 4411", ward_id="W1", floor="3", room="312")
    return OrderRequest(**{**base, **kw})


def test_order_from_the_api_carries_the_standard_fields(world):
    t = world.clock.now_us()
    o = world.desk.create_order("nurse1", _req(severity="serious", emergency=True,
                                               photos=(PNG, JPEG)), channel="web")
    assert (o.institution, o.model, o.serial, o.ward_id, o.floor, o.room) == (
        "H1", "VC-W1", f"{DEV:016x}", "W1", "3", "312")
    assert o.severity is Severity.SERIOUS and o.emergency and o.channel is Channel.WEB
    assert o.request_type is RequestType.EMERGENCY_REPAIR and o.status is OrderStatus.OPEN
    assert o.reported_us == o.fault_us == t and o.in_service_us == T0
    assert o.team == "team/biomed" and o.notified_us == t  # the notifier accepted at once
    assert [n.kind for n in world.notices] == ["assigned"]
    assert world.notices[0].targets == ("team/biomed",)
    photos = world.desk.photos(o.order_id)
    assert [p.sha256 for p in photos] == [hashlib.sha256(x).hexdigest() for x in (PNG, JPEG)]
    assert world.desk.photo_data(o.order_id, photos[0].photo_id) == ("image/png", PNG)
    assert [e.kind for e in world.desk.order_events(o.order_id)] == [
        "reported", "photo", "photo", "notified"]


def test_full_lifecycle_closes_with_verification_and_sign_off(world):
    d, c = world.desk, world.clock
    o = d.create_order("nurse1", _req())
    for step in (lambda: d.respond("biomed", o.order_id, "on my way"),
                 lambda: d.start_work("biomed", o.order_id),
                 lambda: d.mark_fixed("biomed", o.order_id, "lead wire replaced"),
                 lambda: d.verify("biomed", o.order_id, True, "REF-SIM-7"),
                 lambda: d.sign_off("nurse1", o.order_id, "trace fine again"),
                 lambda: d.close("biomed", o.order_id)):
        c.advance(60)
        step()
    o = d.order(o.order_id)
    assert o.status is OrderStatus.CLOSED and o.verified_by == "biomed"
    assert o.signed_off_by == "nurse1" and o.verification_ref == "REF-SIM-7"
    assert [o.responded_us - o.reported_us, o.closed_us - o.reported_us] == [60e6, 360e6]
    assert all(v.state is ClockState.MET for v in d.clocks(o, c.now_us() + 10**12))
    assert not world.kinds("escalated")
    d.set_follow_up("biomed", o.order_id, "call the ward in a week",
                    due_us=c.now_us() + 7 * 86_400_000_000)
    assert d.follow_ups_due() == []
    assert [f.order_id for f in d.follow_ups_due(c.now_us() + 8 * 86_400_000_000)] == [
        o.order_id]


def test_closing_without_verification_is_refused_audited_and_changes_nothing(world):
    d = world.desk
    o = d.create_order("nurse1", _req())
    d.respond("biomed", o.order_id)
    d.start_work("biomed", o.order_id)
    d.mark_fixed("biomed", o.order_id, "cable reseated")
    before = _counts(world)
    with pytest.raises(UsageError, match="no passed function test"):
        d.close("biomed", o.order_id)
    d.verify("biomed", o.order_id, True, "REF-SIM-7")
    with pytest.raises(UsageError, match="not signed off"):
        d.close("biomed", o.order_id)
    assert d.order(o.order_id).status is OrderStatus.VERIFIED
    assert [e.outcome for e in _audit(world, "close")] == ["error", "error"]
    assert _counts(world)[0] == before[0]


def test_failed_function_test_reopens_the_fix(sqlite_world):
    world = sqlite_world
    d = world.desk
    o = d.create_order("nurse1", _req())
    d.respond("biomed", o.order_id)
    d.start_work("biomed", o.order_id, remote=True)
    d.mark_fixed("biomed", o.order_id, "firmware reflashed")
    o = d.verify("biomed", o.order_id, False, "REF-SIM-7", "ECG still flat")
    assert o.status is OrderStatus.IN_PROGRESS and o.fixed_us is None
    assert "verify_failed" in [e.kind for e in d.order_events(o.order_id)]
    assert "start_remote" in [e.kind for e in d.order_events(o.order_id)]


def test_unknown_device_ward_or_reporter_write_nothing_but_the_audit(world):
    before = _counts(world)
    with pytest.raises(UsageError, match="unknown device 000000000000beef"):
        world.desk.create_order("nurse1", _req(device_id=0xBEEF))
    with pytest.raises(UsageError, match="unknown ward 'W9'"):
        world.desk.create_order("nurse1", _req(ward_id="W9"))
    with pytest.raises(UsageError, match="unknown or disabled"):
        world.desk.create_order("nobody", _req())
    with pytest.raises(UsageError, match="unknown contract"):
        world.desk.create_order("nurse1", _req(contract="gold"))
    assert _counts(world) == before
    assert [e.outcome for e in _audit(world, "create_work_order")] == ["error"] * 3
    assert not world.notices


def test_a_bad_photo_rolls_back_the_whole_order(sqlite_world):
    world = sqlite_world
    before = _counts(world)
    with pytest.raises(UsageError, match="attached already"):
        world.desk.create_order("nurse1", _req(photos=(PNG, PNG)))
    with pytest.raises(UsageError, match="JPEG, PNG or WebP"):
        _req(photos=(b"GIF89a....",))
    assert _counts(world) == before


def test_steps_need_the_right_people_and_order(world):
    d = world.desk
    o = d.create_order("nurse1", _req())
    with pytest.raises(AccessDenied):
        d.respond("nurse1", o.order_id)  # ward staff do not maintain devices
    with pytest.raises(UsageError, match="is open: cannot start"):
        d.start_work("biomed", o.order_id)
    d.respond("biomed", o.order_id)
    with pytest.raises(UsageError, match="before its last recorded step"):
        d.start_work("biomed", o.order_id, at_us=o.reported_us - MIN)
    d.start_work("biomed", o.order_id)
    d.mark_fixed("biomed", o.order_id, "done")
    d.verify("biomed", o.order_id, True, "REF-SIM-7")
    with pytest.raises(AccessDenied, match="outside the user's scope"):
        d.sign_off("nurse2", o.order_id)  # W2's nurse cannot sign off for W1
    with pytest.raises(UsageError, match="unknown work order"):
        d.respond("biomed", 999_999)
    assert [e.outcome for e in _audit(world, "sign_off")] == ["denied"]
    assert d.order(o.order_id).signed_off_us is None


def test_ward_comes_from_the_patient_when_not_given(sqlite_world):
    world = sqlite_world
    s, t = world.store, world.clock.now_us()
    s.admit("nurse1", "P1", "W1", "W1-B2", display_name="Ann", at_us=t)
    s.bind_device("nurse1", "P1", DEV, at_us=t)
    o = world.desk.create_order("nurse1", _req(ward_id=None, room=""), at_us=t + 1)
    assert (o.ward_id, o.room) == ("W1", "bed 2")


def test_auto_assignment_rules_and_failed_notification(sqlite_world, tmp_path):
    w = sqlite_world
    w.desk.config = DeskConfig(assigner=Assigner((
        AssignmentRule("team/icu", wards={"W2"}),
        AssignmentRule("team/oncall", emergency=True),
        AssignmentRule("team/training", request_types={RequestType.TRAINING}))))
    assert w.desk.create_order("nurse1", _req(ward_id="W2")).team == "team/icu"
    assert w.desk.create_order("nurse1", _req(emergency=True)).team == "team/oncall"
    assert w.desk.create_order("nurse1", _req(request_type="training")).team == "team/training"
    assert w.desk.create_order("nurse1", _req()).team == "team/biomed"
    w.fail_notify = True
    o = w.desk.create_order("nurse1", _req())
    assert o.notified_us is None and w.desk.counters["notify_errors"] == 1
    w.clock.advance(61)
    esc = w.desk.escalations(o.order_id)
    assert [e[0] for e in esc] == [Milestone.NOTIFY.value]


def test_request_validation_is_strict():
    with pytest.raises(UsageError, match="severity must be one of"):
        _req(severity="catastrophic")
    with pytest.raises(UsageError, match="description"):
        _req(description="   ")
    with pytest.raises(UsageError, match="device id"):
        _req(device_id=0)
    with pytest.raises(UsageError, match="emergency must be a bool"):
        _req(emergency="yes")
