"""The organisation tree: creation rules, bad ids, unknown parents, containment."""

from __future__ import annotations

import pytest
from clinical_world import DEVICES, MIN, T0, build_world

from vitalcore.clinical import Resource
from vitalcore.errors import AccessDenied, UsageError


@pytest.fixture
def world(store):
    build_world(store)
    return store


def test_tree_is_listed_and_scopes_contain_upwards(world):
    s = world
    assert s.hospitals() == [("H1", "City General"), ("H2", "County")]
    assert [w for w, _, _ in s.wards("H1")] == ["W1", "W2"]
    assert [w for w, _, _ in s.wards()] == ["W1", "W2", "W3"]
    assert s.beds("W3") == [("W3-B1", "bed 1"), ("W3-B2", "bed 2")]
    assert s.scopes_of(Resource.bed("W1-B1")) == {
        Resource.everything(), Resource.bed("W1-B1"), Resource.ward("W1"),
        Resource.campus("C1"), Resource.hospital("H1")}
    s.admit("nurse1", "P1", "W1", "W1-B2", devices=[DEVICES[0]], at_us=T0 + MIN)
    assert Resource.bed("W1-B2") in s.scopes_of(Resource.device(DEVICES[0]), T0 + MIN)
    assert Resource.device_group("G-VENDOR") in s.scopes_of(Resource.device(DEVICES[0]))
    assert s.scopes_of(Resource.device(DEVICES[0]), T0) == {  # before the admission
        Resource.everything(), Resource.device(DEVICES[0]), Resource.hospital("H1"),
        Resource.device_group("G-VENDOR")}


@pytest.mark.parametrize("call, error", [
    (lambda s: s.create_hospital("root", "H1", "again"), UsageError),
    (lambda s: s.create_campus("root", "C9", "H9", "x"), UsageError),
    (lambda s: s.create_ward("root", "W9", "C9", "x"), UsageError),
    (lambda s: s.create_bed("root", "B9", "W9", "x"), UsageError),
    (lambda s: s.create_ward("root", "W1", "C1", "again"), UsageError),
    (lambda s: s.create_ward("root", "-W", "C1", "x"), UsageError),
    (lambda s: s.create_ward("root", "W 9", "C1", "x"), UsageError),
    (lambda s: s.create_ward("root", "W9", "C1", ""), UsageError),
    (lambda s: s.create_ward("root", "W9", "C1", "x" * 201), UsageError),
    (lambda s: s.move_bed("root", "NOBED", "W2"), UsageError),
    (lambda s: s.move_bed("root", "W1-B1", "NOWARD"), UsageError),
    (lambda s: s.create_hospital("nurse1", "H9", "x"), AccessDenied),
    (lambda s: s.create_hospital("ghost", "H9", "x"), AccessDenied),
    (lambda s: s.create_device_group("root", "G-VENDOR", "again"), UsageError),
    (lambda s: s.create_user("root", "nurse1", "pw"), UsageError),
    (lambda s: s.create_user("root", "00000000000012ab", "pw"), UsageError),  # a device name
    (lambda s: s.create_user("admin1", "newbie", "pw"), AccessDenied),  # hospital admin
])
def test_bad_organisation_changes_are_refused(world, call, error):
    before = (world.hospitals(), world.wards(), world.beds("W1"), world.beds("W2"))
    with pytest.raises(error):
        call(world)
    assert (world.hospitals(), world.wards(), world.beds("W1"), world.beds("W2")) == before
