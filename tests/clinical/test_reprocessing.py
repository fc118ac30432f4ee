"""The device cycle between patients: cleaning, function check, repair; who and when."""

from __future__ import annotations

import pytest
from clinical_world import DEVICES, MIN, T0, build_world

from vitalcore.clinical import DeviceState
from vitalcore.errors import AccessDenied, UsageError

D1, D2, D3, D4, D5, D6 = DEVICES
S = DeviceState


@pytest.fixture
def world(store):
    build_world(store)
    return store


def test_device_is_reprocessed_before_the_next_patient(world):
    s = world
    s.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + MIN)
    s.discharge("nurse1", "P1", at_us=T0 + 2 * MIN)
    assert s.device(D1).state is S.TO_CLEAN and s.devices_in_state(S.TO_CLEAN) == [D1]
    with pytest.raises(UsageError, match="cleaned"):
        s.admit("nurse1", "P2", "W1", devices=[D1], at_us=T0 + 3 * MIN)
    with pytest.raises(UsageError, match="to_clean"):  # no check before cleaning
        s.record_function_check("biomed", D1, True, "REF-1", at_us=T0 + 3 * MIN)
    s.record_cleaning("biomed", D1, "wiped, disinfected", at_us=T0 + 4 * MIN)
    with pytest.raises(UsageError, match="to_check"):
        s.admit("nurse1", "P2", "W1", devices=[D1], at_us=T0 + 5 * MIN)
    s.record_function_check("biomed", D1, False, "REF-1", "SpO2 off by 6 %", at_us=T0 + 5 * MIN)
    assert s.device(D1).state is S.OUT_OF_SERVICE
    with pytest.raises(UsageError):
        s.record_repair("vendor", D1, "", at_us=T0 + 6 * MIN)
    s.record_repair("vendor", D1, "replaced SpO2 module", at_us=T0 + 6 * MIN)  # G-VENDOR
    s.record_cleaning("biomed", D1, at_us=T0 + 7 * MIN)
    s.record_function_check("biomed", D1, True, "REF-1", at_us=T0 + 8 * MIN)
    s.admit("nurse1", "P2", "W1", devices=[D1], at_us=T0 + 9 * MIN)
    history = s.device_history("vendor", D1)
    assert [(e.kind, e.by_user, e.state_after) for e in history] == [
        ("registered", "root", S.TO_CHECK), ("checked", "biomed", S.AVAILABLE),
        ("bound", "nurse1", S.IN_USE), ("released", "nurse1", S.TO_CLEAN),
        ("cleaned", "biomed", S.TO_CHECK), ("checked", "biomed", S.OUT_OF_SERVICE),
        ("repaired", "vendor", S.TO_CLEAN), ("cleaned", "biomed", S.TO_CHECK),
        ("checked", "biomed", S.AVAILABLE), ("bound", "nurse1", S.IN_USE)]
    assert [e.at_us for e in history] == sorted(e.at_us for e in history)
    failed = history[5]
    assert failed.passed is False and failed.reference == "REF-1" and "SpO2" in failed.note
    assert history[1].passed is True and history[4].passed is None


def test_maintenance_scope_and_order(world):
    s = world
    s.admit("nurse1", "P1", "W1", devices=[D2], at_us=T0 + MIN)
    s.release_device("nurse1", "P1", D2, at_us=T0 + 2 * MIN)
    with pytest.raises(AccessDenied):  # the vendor's contract covers D1 only
        s.record_cleaning("vendor", D2, at_us=T0 + 3 * MIN)
    with pytest.raises(AccessDenied):
        s.device_history("vendor", D2)
    with pytest.raises(AccessDenied):  # nurses do not sign off function checks
        s.record_cleaning("nurse1", D2, at_us=T0 + 3 * MIN)
    with pytest.raises(UsageError, match="before its last"):
        s.record_cleaning("biomed", D2, at_us=T0 + MIN)
    with pytest.raises(UsageError):
        s.record_function_check("biomed", D2, 1, "REF-1", at_us=T0 + 3 * MIN)  # not a bool
    with pytest.raises(UsageError):
        s.record_cleaning("biomed", 0x4242, at_us=T0 + 3 * MIN)  # unknown device
    assert s.device(D2).state is S.TO_CLEAN


def test_registration_and_groups(world):
    s = world
    with pytest.raises(UsageError, match="registered already"):
        s.register_device("root", D1, "VC-W1", "H1", at_us=T0 + MIN)
    for bad in (0, -1, 1 << 64, "12ab", True):
        with pytest.raises(UsageError):
            s.register_device("root", bad, "VC-W1", "H1", at_us=T0 + MIN)
    with pytest.raises(AccessDenied):
        s.register_device("nurse1", 0x2001, "VC-W1", "H1", at_us=T0 + MIN)
    with pytest.raises(AccessDenied):  # admin1 administers H1, not H2
        s.register_device("admin1", 0x2001, "VC-W1", "H2", at_us=T0 + MIN)
    s.register_device("admin1", 0x2001, "VC-W1", "H1", at_us=T0 + MIN)
    assert s.device(0x2001).state is S.TO_CHECK  # checked before first use
    s.set_group_member("root", "G-VENDOR", 0x2001, at_us=T0 + MIN)
    s.record_function_check("vendor", 0x2001, True, "REF-2", at_us=T0 + 2 * MIN)
    s.set_group_member("root", "G-VENDOR", 0x2001, False, at_us=T0 + 3 * MIN)
    with pytest.raises(AccessDenied):
        s.device_history("vendor", 0x2001)
    assert 2 ** 64 - 1 not in s.devices_in_state(S.AVAILABLE)
    s.register_device("root", 2 ** 64 - 1, "VC-W1", None, at_us=T0 + MIN)  # full u64 range
    assert s.device(2 ** 64 - 1).hospital_id is None
