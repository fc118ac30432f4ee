"""Outsourced service: a vendor sees, works on, then loses a device; scope and expiry are
enforced by the clinical grants and audited; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from service_world import DEVICES, ROOT

from vitalcore.clinical import Permission, Resource
from vitalcore.errors import AccessDenied, UsageError
from vitalcore.service import OrderRequest, RecordKind, VendorScope

DEV = DEVICES[0]
DAY = 86_400_000_000


def _denied(world, action: str) -> list:
    return [e for e in world.store.audit_log(ROOT, 0, 2**62)
            if e.action == action and e.outcome == "denied"]


def _associate(world, scopes, days=30, device=DEV, vendor="ACME"):
    t = world.clock.now_us()
    return world.desk.associate_device(ROOT, vendor, device, scopes, t, t + days * DAY)


def test_vendor_sees_then_loses_the_device_at_expiry(world):
    d, c = world.desk, world.clock
    a = _associate(world, [VendorScope.VIEW_ARCHIVE, VendorScope.REPAIR_RECORDS])
    order = d.create_order("nurse1", OrderRequest(DEV, "cracked screen", "ext 5", ward_id="W1"))
    arch = d.device_archive("acme.tech", DEV)
    assert arch.model == "VC-W1" and [o.order_id for o in arch.orders] == [order.order_id]
    assert [e.kind for e in arch.history][:1] == ["registered"]
    world.store.authorize("acme.tech", Permission.VIEW_DEVICE_ARCHIVE, Resource.device(DEV))
    assert [o.order_id for o in d.vendor_orders("acme.tech")] == [order.order_id]
    # 15 days before the end: one warning to the vendor and the service lead
    c.advance_to(a.valid_until_us - 15 * DAY - 1)
    assert not world.kinds("authorisation_expiring")
    c.advance(1)
    warn = world.kinds("authorisation_expiring")
    assert len(warn) == 1 and warn[0].targets == ("vendor/ACME", "service/lead")
    c.advance(5 * 86400)
    assert len(world.kinds("authorisation_expiring")) == 1
    d.device_archive("acme.tech", DEV, at_us=a.valid_until_us - 1)  # still inside
    c.advance_to(a.valid_until_us)
    with pytest.raises(AccessDenied, match="no role with this permission at this time"):
        d.device_archive("acme.tech", DEV)
    with pytest.raises(AccessDenied):
        world.store.authorize("acme.tech", Permission.VIEW_DEVICE_ARCHIVE, Resource.device(DEV))
    assert d.vendor_orders("acme.tech") == []
    assert [e.resource for e in _denied(world, "device_archive")] == [f"device:{DEV:016x}"]
    assert d.associations(device_id=DEV) == [d.associations(association_id=a.association_id)[0]]


def test_vendor_gets_its_orders_pushed_and_the_hospital_sees_its_progress(world):
    d, c = world.desk, world.clock
    _associate(world, [VendorScope.REPAIR_RECORDS, VendorScope.VIEW_ARCHIVE])
    o = d.create_order("nurse1", OrderRequest(DEV, "no SpO2", "ext 5", ward_id="W1"))
    assert o.team == "vendor/ACME" and o.vendor_id == "ACME"
    assert [(n.kind, n.targets) for n in world.notices] == [
        ("assigned", ("vendor/ACME",)), ("order_update", ("vendor/ACME",))]
    c.advance(120)
    d.respond("acme.tech", o.order_id, "engineer dispatched")
    c.advance(600)
    d.start_work("acme.tech", o.order_id)
    rec = d.add_record("acme.tech", DEV, RecordKind.REPAIR, "SpO2 probe replaced", o.order_id)
    assert rec.vendor_id == "ACME"
    pushed = [n.payload["step"] for n in world.kinds("order_update")[1:]]
    assert pushed == ["respond", "start_on_site"]
    steps = [(e.kind, e.actor, e.at_us - o.reported_us)
             for e in d.order_events(o.order_id) if e.actor == "acme.tech"]
    assert steps == [("respond", "acme.tech", 120_000_000),
                     ("start_on_site", "acme.tech", 720_000_000)]
    # a preventive-maintenance order is outside a repair-only scope: the hospital's team
    pm = d.create_order("nurse1", OrderRequest(DEV, "yearly check", "ext 5",
                                               request_type="preventive_maintenance"))
    assert pm.team == "team/biomed" and pm.vendor_id is None


def test_vendor_actions_outside_scope_are_denied_and_audited(world):
    d = world.desk
    _associate(world, [VendorScope.VIEW_ARCHIVE, VendorScope.REPAIR_RECORDS])
    o = d.create_order("nurse1", OrderRequest(DEV, "no ECG", "ext 5", ward_id="W1"))
    with pytest.raises(AccessDenied, match="service.calibration_records"):
        d.add_record("acme.tech", DEV, "calibration", "NIBP calibrated")
    with pytest.raises(AccessDenied):  # another vendor: no clinical grant at all
        d.device_archive("other.tech", DEV)
    with pytest.raises(AccessDenied):  # ACME's grant is for this device only
        d.device_archive("acme.tech", DEVICES[1])
    assert [e.permission for e in _denied(world, "add_calibration_record")] == [
        "service.calibration_records"]
    assert len(_denied(world, "device_archive")) == 2
    d.add_record("biomed", DEV, "calibration", "NIBP calibrated")  # hospital engineers may
    arch = d.device_archive("acme.tech", DEV)
    assert arch.records == []  # calibration records are outside ACME's scope
    # an archive-only vendor: its clinical grant is narrowed to viewing the archive, so the
    # desk and the clinical store itself refuse any maintenance
    _associate(world, [VendorScope.VIEW_ARCHIVE], device=DEVICES[1], vendor="OTHER")
    o2 = d.create_order("nurse1", OrderRequest(DEVICES[1], "no SpO2", "ext 5", ward_id="W1"))
    with pytest.raises(AccessDenied, match="maintain_devices"):
        d.respond("other.tech", o2.order_id)
    with pytest.raises(AccessDenied, match="maintain_devices"):
        world.store.record_function_check("other.tech", DEVICES[1], True, "REF-1",
                                          at_us=world.clock.now_us())
    assert d.device_archive("other.tech", DEVICES[1]).device_id == DEVICES[1]
    assert d.order(o.order_id).responded_us is None and d.order(o2.order_id).responded_us is None
    assert [e.permission for e in _denied(world, "respond")] == ["maintain_devices"]


def test_overlaps_are_refused_revocation_ends_access_and_history_stays(world):
    d, t = world.desk, world.clock.now_us()
    a = _associate(world, [VendorScope.VIEW_ARCHIVE])
    grants = len(world.store.grants_of("other.tech"))
    with pytest.raises(UsageError, match="overlapping period"):
        d.associate_device(ROOT, "OTHER", DEV, ["view_archive"], t + DAY, t + 40 * DAY)
    with pytest.raises(AccessDenied):
        d.associate_device("biomed", "OTHER", DEVICES[1], ["view_archive"], t, t + DAY)
    with pytest.raises(UsageError, match="unknown device"):
        d.associate_device(ROOT, "ACME", 0xBEEF, ["view_archive"], t, t + DAY)
    with pytest.raises(UsageError, match="scopes must be among"):
        d.associate_device(ROOT, "ACME", DEV, ["everything"], t, t + DAY)
    assert len(d.associations()) == 1  # nothing of the refused ones was written
    assert len(world.store.grants_of("other.tech")) == grants
    world.clock.advance(3600)
    d.revoke_association(ROOT, a.association_id)
    with pytest.raises(AccessDenied):
        d.device_archive("acme.tech", DEV)
    with pytest.raises(UsageError, match="revoked already"):
        d.revoke_association(ROOT, a.association_id)
    b = d.associate_device(ROOT, "OTHER", DEV, ["view_archive"], world.clock.now_us(),
                           world.clock.now_us() + DAY)
    d.device_archive("other.tech", DEV)
    hist = d.associations(device_id=DEV)
    assert [(h.vendor_id, h.revoked_us is not None) for h in hist] == [("ACME", True),
                                                                      ("OTHER", False)]
    assert hist[1] == b


def test_invitations_are_checked(sqlite_world):
    world = sqlite_world
    d = world.desk
    with pytest.raises(UsageError, match="acts for vendor 'ACME' already"):
        d.invite_vendor(ROOT, "ZED", "Zed", "zed@example.com", ["acme.tech"])
    with pytest.raises(UsageError, match="unknown user 'ghost'"):
        d.invite_vendor(ROOT, "ZED", "Zed", "zed@example.com", ["ghost"])
    with pytest.raises(AccessDenied):
        d.invite_vendor("biomed", "ZED", "Zed", "zed@example.com", ["other.tech"])
    assert [v.vendor_id for v in d.vendors()] == ["ACME", "OTHER"]
    assert d.vendor("ACME").users == ("acme.boss", "acme.tech")
