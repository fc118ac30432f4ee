"""Roles, scopes that follow the patient, time windows, and the audit of every decision."""

from __future__ import annotations

import pytest
from clinical_world import DEVICES, MIN, T0, build_world

from vitalcore.clinical import ROLE_PERMISSIONS, Permission, Resource, Role
from vitalcore.errors import AccessDenied, UsageError

D1, D2, D3, D4, D5, D6 = DEVICES
READ = Permission.READ_VITALS


@pytest.fixture
def world(store):
    build_world(store)
    store.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + MIN)
    store.admit("nurse2", "P2", "W2", devices=[D2], at_us=T0 + MIN)
    return store


def _allowed(store, user, perm, resource, t) -> bool:
    try:
        store.authorize(user, perm, resource, t)
    except AccessDenied as exc:
        assert exc.user == user and exc.permission == perm.value
        assert exc.resource == str(resource)
        return False
    return True


def test_role_table_is_complete_and_least_privilege():
    assert set(ROLE_PERMISSIONS) == set(Role)
    for role, perms in ROLE_PERMISSIONS.items():
        assert perms and perms <= set(Permission), role
    readers = {r for r, p in ROLE_PERMISSIONS.items() if Permission.READ_VITALS in p}
    assert readers == {Role.WARD_NURSE, Role.WARD_DOCTOR, Role.CENTRAL_MONITORING,
                       Role.REMOTE_VIEWER}
    assert Permission.MAINTAIN_DEVICES in ROLE_PERMISSIONS[Role.SERVICE_VENDOR]


def test_ward_scope_follows_the_patient(world):
    s, t = world, T0 + 2 * MIN
    assert _allowed(s, "nurse1", READ, Resource.patient("P1"), t)
    assert _allowed(s, "nurse1", READ, Resource.device(D1), t)  # device of a W1 patient
    assert not _allowed(s, "nurse1", READ, Resource.patient("P2"), t)
    assert not _allowed(s, "nurse1", READ, Resource.device(D2), t)
    assert not _allowed(s, "nurse1", READ, Resource.device(D3), t)  # bound to nobody
    assert _allowed(s, "central", READ, Resource.patient("P2"), t)  # hospital scope
    assert not _allowed(s, "admin1", READ, Resource.patient("P1"), t)  # organises only
    assert not _allowed(s, "vendor", READ, Resource.device(D1), t)  # never patient data
    s.transfer("bedmgr", "P1", "W2", at_us=T0 + 3 * MIN)
    t = T0 + 4 * MIN
    assert not _allowed(s, "nurse1", READ, Resource.patient("P1"), t)
    assert _allowed(s, "nurse2", READ, Resource.patient("P1"), t)
    assert _allowed(s, "nurse2", READ, Resource.device(D1), t)


def test_transport_visibility_and_announcement_needs_scope(world):
    s = world
    with pytest.raises(AccessDenied):  # nurse1 may not announce W3 (hospital H2)
        s.start_transport("nurse1", "P1", to_ward_id="W3", at_us=T0 + 2 * MIN)
    s.start_transport("bedmgr", "P1", to_ward_id="W2", at_us=T0 + 2 * MIN)
    t = T0 + 3 * MIN
    for user in ("nurse1", "nurse2", "central"):
        assert _allowed(s, user, READ, Resource.patient("P1"), t), user
    assert not _allowed(s, "nurse3", READ, Resource.patient("P1"), t)
    assert s.devices_of_ward("W1", t) == [] and s.devices_of_ward("W2", t) == [D2]


def test_time_window_and_revocation(world):
    s = world
    s.create_user("root", "consultant", "c-pw", at_us=T0 + MIN)
    gid = s.grant_role("root", "consultant", Role.REMOTE_VIEWER, Resource.patient("P1"),
                       valid_from_us=T0 + 10 * MIN, valid_until_us=T0 + 20 * MIN, at_us=T0 + MIN)
    assert not _allowed(s, "consultant", READ, Resource.patient("P1"), T0 + 10 * MIN - 1)
    assert _allowed(s, "consultant", READ, Resource.patient("P1"), T0 + 10 * MIN)
    assert _allowed(s, "consultant", READ, Resource.device(D1), T0 + 15 * MIN)
    assert not _allowed(s, "consultant", READ, Resource.patient("P2"), T0 + 15 * MIN)
    assert not _allowed(s, "consultant", Permission.ACK_ALARMS, Resource.patient("P1"),
                        T0 + 15 * MIN)
    assert not _allowed(s, "consultant", READ, Resource.patient("P1"), T0 + 20 * MIN)
    s.revoke_grant("root", gid, at_us=T0 + 12 * MIN)
    assert not _allowed(s, "consultant", READ, Resource.patient("P1"), T0 + 15 * MIN)
    assert s.grants_of("consultant") == []
    with pytest.raises(UsageError):
        s.revoke_grant("root", gid, at_us=T0 + 13 * MIN)
    with pytest.raises(UsageError):
        s.grant_role("root", "consultant", Role.REMOTE_VIEWER, Resource.patient("P1"),
                     valid_from_us=5, valid_until_us=5)
    with pytest.raises(UsageError):
        s.grant_role("root", "consultant", "surgeon", Resource.patient("P1"))


def test_a_grant_narrowed_to_some_of_its_roles_permissions(world):
    s = world
    s.create_user("root", "archivist", "a-pw", at_us=T0 + MIN)
    s.grant_role("root", "archivist", Role.SERVICE_VENDOR, Resource.device(D1), at_us=T0 + MIN,
                 permissions=[Permission.VIEW_DEVICE_ARCHIVE])
    t = T0 + 2 * MIN
    assert _allowed(s, "archivist", Permission.VIEW_DEVICE_ARCHIVE, Resource.device(D1), t)
    assert not _allowed(s, "archivist", Permission.MAINTAIN_DEVICES, Resource.device(D1), t)
    with pytest.raises(AccessDenied):  # the store's own operation refuses it too
        s.record_function_check("archivist", D1, True, "REF-1", at_us=t)
    for bad in ([], [Permission.READ_VITALS], ["no_such_permission"]):
        with pytest.raises(UsageError, match="permission"):
            s.grant_role("root", "archivist", Role.SERVICE_VENDOR, Resource.device(D1),
                         permissions=bad)
    assert len(s.grants_of("archivist")) == 1  # refused grants wrote nothing


def test_disabled_and_unknown_users_are_denied(world):
    s, t = world, T0 + 2 * MIN
    s.set_user_disabled("root", "nurse1", at_us=t)
    assert not _allowed(s, "nurse1", READ, Resource.patient("P1"), t)
    assert not s.verify_login("nurse1", "nurse1-pw")
    s.set_user_disabled("root", "nurse1", False, at_us=t)
    assert s.verify_login("nurse1", "nurse1-pw") and not s.verify_login("nurse1", "x")
    assert not _allowed(s, "mallory", READ, Resource.patient("P1"), t)
    assert not s.verify_login("mallory", "x")
    with pytest.raises(UsageError):
        s.authorize("nurse1", READ, Resource.patient("NOBODY"), t)
    with pytest.raises(UsageError):
        s.authorize("nurse1", "read_everything", Resource.patient("P1"), t)


def test_organisation_and_user_management_need_authority(world):
    s, t = world, T0 + 2 * MIN
    with pytest.raises(AccessDenied):
        s.create_ward("nurse1", "W9", "C1", "rogue ward", at_us=t)
    with pytest.raises(AccessDenied):
        s.create_ward("admin1", "W9", "C2", "other hospital", at_us=t)  # admin1: H1 only
    s.create_ward("admin1", "W9", "C1", "new ward", at_us=t)
    with pytest.raises(AccessDenied):
        s.move_bed("nurse1", "W1-B2", "W9", at_us=t)
    s.move_bed("admin1", "W1-B2", "W9", at_us=t)
    assert s.beds("W9") == [("W1-B2", "bed 2")]
    s.admit("nurse1", "P5", "W1", "W1-B1", at_us=t)
    with pytest.raises(UsageError):  # occupied beds do not move
        s.move_bed("admin1", "W1-B1", "W9", at_us=t)
    with pytest.raises(AccessDenied):  # hospital admins grant within their hospital only
        s.grant_role("admin1", "nurse1", Role.WARD_NURSE, Resource.ward("W3"), at_us=t)
    with pytest.raises(AccessDenied):  # a nurse cannot grant herself more
        s.grant_role("nurse1", "nurse1", Role.WARD_NURSE, Resource.ward("W2"), at_us=t)
    with pytest.raises(AccessDenied):
        s.audit_log("nurse1", 0, 1 << 62)
    with pytest.raises(UsageError):
        s.bootstrap_administrator("eve", "pw")


def test_every_decision_and_patient_data_access_is_audited(world):
    s, t = world, T0 + 2 * MIN
    log0 = len(s.audit_log("root", 0, 1 << 62))
    s.device_spans("P1", T0, t, user="nurse1")
    with pytest.raises(AccessDenied):
        s.device_spans("P1", T0, t, user="nurse2")
    with pytest.raises(AccessDenied):
        s.devices_of_ward("W1", t, user="nurse2")
    assert s.patient_of(D1, t, user="central") == "P1"
    with pytest.raises(AccessDenied):
        s.discharge("nurse2", "P1", at_us=t)
    assert s.devices_of_ward("W1", t) == [D1]  # the denied discharge changed nothing
    new = s.audit_log("root", 0, 1 << 62)[log0 + 1:]  # +1: the audit read itself
    got = [(e.user, e.action, e.resource, e.outcome) for e in new]
    assert got == [
        ("nurse1", "device_spans", "patient:P1", "allowed"),
        ("nurse2", "device_spans", "patient:P1", "denied"),
        ("nurse2", "devices_of_ward", "ward:W1", "denied"),
        ("central", "patient_of", f"device:{D1:016x}", "allowed"),
        ("nurse2", "discharge", "patient:P1", "denied"),
    ]
    assert new[1].permission == "read_vitals" and "scope" in new[1].detail
    assert all(e.recorded_us > 0 for e in new)
    mine = s.audit_log("root", 0, 1 << 62, user="nurse2")
    assert {e.user for e in mine} == {"nurse2"} and len(mine) >= 3
