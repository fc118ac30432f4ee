"""Admission, transfers, transport, swaps, discharge and the lookups built on them."""

from __future__ import annotations

import pytest
from clinical_world import DEVICES, MIN, T0, build_world

from vitalcore.clinical import DeviceSpan, DeviceState, Resource
from vitalcore.errors import AccessDenied, UsageError

D1, D2, D3, D4, D5, D6 = DEVICES


def _rows(store) -> dict[str, int]:
    with store.db.transaction(write=False) as tx:
        return {t: tx.scalar(f"SELECT COUNT(*) FROM {t}") for t in
                ("patients", "placements", "bindings", "device_events", "role_grants")}


@pytest.fixture
def world(store):
    build_world(store)
    return store


def test_record_continuous_through_transfer_transport_swap_and_hospitals(world):
    s = world
    s.admit("nurse1", "P1", "W1", "W1-B1", devices=[D1], at_us=T0 + 10 * MIN)
    s.transfer("bedmgr", "P1", "W2", "W2-B2", at_us=T0 + 20 * MIN)
    s.start_transport("nurse2", "P1", at_us=T0 + 30 * MIN)
    s.swap_device("bedmgr", "P1", D1, D5, at_us=T0 + 35 * MIN)
    # nurse3 (ward W3, hospital H2) has no say over a patient in transport from W2 that
    # did not announce W3: refused, nothing changes
    with pytest.raises(AccessDenied):
        s.transfer("nurse3", "P1", "W3", at_us=T0 + 60 * MIN)
    assert s.placements("P1")[-1].ward_id is None
    # a grant on the patient (the receiving hospital's admission) lets nurse3 take them in
    s.grant_role("root", "nurse3", "ward_nurse", Resource.patient("P1"), at_us=T0 + 61 * MIN)
    s.transfer("nurse3", "P1", "W3", at_us=T0 + 62 * MIN)
    s.discharge("nurse3", "P1", at_us=T0 + 90 * MIN)
    spans = s.device_spans("P1", T0, T0 + 100 * MIN)
    assert spans == [
        DeviceSpan("P1", D1, T0 + 10 * MIN, T0 + 20 * MIN, "W1"),
        DeviceSpan("P1", D1, T0 + 20 * MIN, T0 + 30 * MIN, "W2"),
        DeviceSpan("P1", D1, T0 + 30 * MIN, T0 + 35 * MIN, None),
        DeviceSpan("P1", D5, T0 + 35 * MIN, T0 + 62 * MIN, None),
        DeviceSpan("P1", D5, T0 + 62 * MIN, T0 + 90 * MIN, "W3"),
    ]
    # the spans tile the stay without gap: one continuous record
    assert all(a.end_us == b.start_us for a, b in zip(spans, spans[1:], strict=False))
    assert s.device_spans("P1", T0 + 36 * MIN, T0 + 37 * MIN) == [spans[3]]
    assert s.device(D1).state is DeviceState.TO_CLEAN
    assert s.device(D5).state is DeviceState.TO_CLEAN
    places = s.placements("P1")
    assert [(p.ward_id, p.from_ward_id) for p in places] == [
        ("W1", None), ("W2", None), (None, "W2"), ("W3", None)]
    assert places[-1].end_us == T0 + 90 * MIN


def test_lookups_at_a_time(world):
    s = world
    s.admit("nurse1", "P1", "W1", devices=[D1, D2], at_us=T0 + MIN)
    s.admit("nurse2", "P2", "W2", devices=[D3], at_us=T0 + MIN)
    s.transfer("bedmgr", "P2", "W1", at_us=T0 + 5 * MIN)
    assert s.devices_of_ward("W1", T0 + 2 * MIN) == [D1, D2]
    assert s.devices_of_ward("W1", T0 + 5 * MIN) == [D1, D2, D3]  # from the instant of transfer
    assert s.devices_of_ward("W2", T0 + 5 * MIN - 1) == [D3]
    assert s.devices_of_ward("W2", T0 + 5 * MIN) == []
    assert s.patients_of_ward("W1", T0 + 6 * MIN) == ["P1", "P2"]
    assert s.patient_of(D3, T0) is None and s.patient_of(D3, T0 + MIN) == "P2"
    s.release_device("nurse1", "P1", D2, at_us=T0 + 7 * MIN)
    assert s.patient_of(D2, T0 + 7 * MIN) is None and s.patient_of(D2, T0 + 7 * MIN - 1) == "P1"
    assert s.device_spans("P1", T0, T0 + 10 * MIN) == [
        DeviceSpan("P1", D1, T0 + MIN, None, "W1"),
        DeviceSpan("P1", D2, T0 + MIN, T0 + 7 * MIN, "W1")]
    for bad in (lambda: s.devices_of_ward("NOWARD", T0), lambda: s.patient_of(0x9999, T0),
                lambda: s.device_spans("NOBODY", T0, T0 + 1),
                lambda: s.device_spans("P1", T0 + 1, T0 + 1),
                lambda: s.patient_of(D1, -1), lambda: s.patient_of(0, T0)):
        with pytest.raises(UsageError):
            bad()


@pytest.mark.parametrize("attempt", [
    "admit_unknown_ward", "admit_bad_bed", "admit_bed_of_other_ward", "admit_twice",
    "bind_twice", "bind_unchecked", "bind_unknown", "transfer_unknown_ward",
    "transfer_not_admitted", "transfer_occupied_bed", "backdated", "swap_same",
    "release_not_bound", "transport_twice", "discharge_not_admitted", "admit_dup_device",
    "bad_patient_id",
])
def test_bad_input_is_refused_whole_and_audited(world, attempt):
    s = world
    s.admit("nurse1", "P1", "W1", "W1-B1", devices=[D1], at_us=T0 + MIN)
    s.admit("nurse2", "P2", "W2", "W2-B1", devices=[D2], at_us=T0 + MIN)
    s.start_transport("nurse2", "P2", at_us=T0 + 2 * MIN)
    s.release_device("nurse1", "P1", D1, at_us=T0 + 3 * MIN)  # D1 now to_clean
    s.bind_device("nurse1", "P1", D3, at_us=T0 + 3 * MIN)
    t = T0 + 4 * MIN
    calls = {
        "admit_unknown_ward": lambda: s.admit("bedmgr", "P9", "W9", devices=[D4], at_us=t),
        "admit_bad_bed": lambda: s.admit("nurse1", "P9", "W1", "NOBED", devices=[D4], at_us=t),
        "admit_bed_of_other_ward": lambda: s.admit("bedmgr", "P9", "W1", "W2-B2", [D4], at_us=t),
        "admit_twice": lambda: s.admit("nurse1", "P1", "W1", devices=[D4], at_us=t),
        "bind_twice": lambda: s.admit("nurse1", "P9", "W1", "W1-B2", devices=[D4, D3], at_us=t),
        "bind_unchecked": lambda: s.admit("nurse1", "P9", "W1", devices=[D4, D1], at_us=t),
        "bind_unknown": lambda: s.admit("nurse1", "P9", "W1", devices=[D4, 0x77], at_us=t),
        "transfer_unknown_ward": lambda: s.transfer("bedmgr", "P1", "W7", at_us=t),
        "transfer_not_admitted": lambda: s.transfer("bedmgr", "P404", "W2", at_us=t),
        "transfer_occupied_bed": lambda: s.transfer("bedmgr", "P2", "W1", "W1-B1", at_us=t),
        "backdated": lambda: s.transfer("bedmgr", "P1", "W2", at_us=T0 + 2 * MIN),
        "swap_same": lambda: s.swap_device("nurse1", "P1", D3, D3, at_us=t),
        "release_not_bound": lambda: s.release_device("nurse1", "P1", D2, at_us=t),
        "transport_twice": lambda: s.start_transport("bedmgr", "P2", at_us=t),
        "discharge_not_admitted": lambda: s.discharge("bedmgr", "P404", at_us=t),
        "admit_dup_device": lambda: s.admit("nurse1", "P9", "W1", devices=[D4, D4], at_us=t),
        "bad_patient_id": lambda: s.admit("nurse1", "", "W1", at_us=t),
    }
    before = _rows(s)
    audit_before = len(s.audit_log("root", 0, 1 << 62))
    states = {d: s.device(d).state for d in DEVICES}
    with pytest.raises(UsageError) as info:
        calls[attempt]()
    assert str(info.value)  # a message saying what is wrong
    assert _rows(s) == before  # nothing partial
    assert {d: s.device(d).state for d in DEVICES} == states
    log = s.audit_log("root", 0, 1 << 62)
    # one record for the refused call (the audit_log read before it is one more)
    new = log[audit_before + 1:]
    if attempt in ("swap_same", "bad_patient_id"):  # refused before any operation began
        assert new == []
    else:
        assert [e.outcome for e in new] == ["error"] and new[0].detail == str(info.value)


def test_readmission_continues_the_record(world):
    s = world
    s.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + MIN)
    s.discharge("nurse1", "P1", at_us=T0 + 2 * MIN)
    with pytest.raises(UsageError):  # D1 is not cleaned yet
        s.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + 3 * MIN)
    s.admit("nurse1", "P1", "W1", devices=[D2], at_us=T0 + 3 * MIN)
    spans = s.device_spans("P1", T0, T0 + 4 * MIN)
    assert [(x.device_id, x.start_us, x.end_us) for x in spans] == [
        (D1, T0 + MIN, T0 + 2 * MIN), (D2, T0 + 3 * MIN, None)]
    # between stays the patient is nowhere: ward staff lose sight of them
    assert s.patients_of_ward("W1", T0 + 2 * MIN + 1) == []
