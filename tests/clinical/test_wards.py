"""The device → ward map for alarm routing: ``device_wards`` and :class:`WardDirectory`
follow admission, transfer, transport, device swap and discharge (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import time

import pytest
from clinical_world import DEVICES, MIN, T0, build_world
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.clinical import WardDirectory
from vitalcore.errors import StorageError, UsageError

D1, D2, D3 = DEVICES[:3]
NURSE = "bedmgr"  # ward nurse of hospital H1 (wards W1, W2)


@pytest.fixture
def world(store):
    build_world(store)
    return store


def test_directory_follows_the_patient_after_each_refresh(world):
    world.admit(NURSE, "P1", "W1", "W1-B1", devices=[D1], at_us=T0 + MIN)
    world.admit(NURSE, "P2", "W2", devices=[D3], at_us=T0 + MIN)
    wards = WardDirectory(world)
    assert wards.ward_of(D1) is None and wards.refreshed_at is None  # nothing read yet
    assert wards.refresh() == 2
    assert (wards.ward_of(D1), wards.ward_of(D3), wards.ward_of(D2)) == ("W1", "W2", None)

    world.transfer(NURSE, "P1", "W2", at_us=T0 + 2 * MIN)
    assert wards.ward_of(D1) == "W1"  # a snapshot: changes show at the next refresh
    wards.refresh()
    assert wards.ward_of(D1) == "W2"

    world.start_transport(NURSE, "P1", to_ward_id="W1", at_us=T0 + 3 * MIN)
    wards.refresh()
    assert wards.ward_of(D1) is None and D1 in wards.snapshot()  # bound, but in no ward

    world.swap_device(NURSE, "P1", D1, D2, at_us=T0 + 4 * MIN)
    wards.refresh()
    assert D1 not in wards.snapshot() and wards.ward_of(D2) is None

    world.transfer(NURSE, "P1", "W1", at_us=T0 + 5 * MIN)
    wards.refresh()
    assert dict(wards.snapshot()) == {D2: "W1", D3: "W2"}

    world.discharge(NURSE, "P1", at_us=T0 + 6 * MIN)
    assert wards.refresh() == 1 and dict(wards.snapshot()) == {D3: "W2"}
    assert wards.counters == {"refreshes": 6, "failures": 0}


def test_device_wards_at_past_instants(world):
    """Bindings and placements are ``[start, end)``: at a swap instant only the new device."""
    world.admit(NURSE, "P1", "W1", devices=[D1], at_us=T0 + MIN)
    world.transfer(NURSE, "P1", "W2", at_us=T0 + 2 * MIN)
    world.start_transport(NURSE, "P1", at_us=T0 + 3 * MIN)
    world.swap_device(NURSE, "P1", D1, D2, at_us=T0 + 4 * MIN)
    world.discharge(NURSE, "P1", at_us=T0 + 5 * MIN)
    at = world.device_wards
    assert at(T0 + MIN - 1) == {} and at(T0 + MIN) == {D1: "W1"}
    assert at(T0 + 2 * MIN - 1) == {D1: "W1"} and at(T0 + 2 * MIN) == {D1: "W2"}
    assert at(T0 + 3 * MIN) == {D1: None}
    assert at(T0 + 4 * MIN - 1) == {D1: None} and at(T0 + 4 * MIN) == {D2: None}
    assert at(T0 + 5 * MIN - 1) == {D2: None} and at(T0 + 5 * MIN) == {}
    assert at() == {}  # now: discharged
    with pytest.raises(UsageError):
        at(-1)


def test_background_refresh_picks_up_a_transfer(world):
    world.admit(NURSE, "P1", "W1", devices=[D1], at_us=T0 + MIN)
    wards = WardDirectory(world, refresh_s=0.05)
    wards.start()
    try:
        assert wards.ward_of(D1) == "W1"  # start() refreshed synchronously
        with pytest.raises(UsageError):
            wards.start()
        world.transfer(NURSE, "P1", "W2", at_us=T0 + 2 * MIN)
        deadline = time.monotonic() + 10
        while wards.ward_of(D1) != "W2":
            assert time.monotonic() < deadline, "transfer not picked up by the refresh thread"
            time.sleep(0.02)
    finally:
        wards.close()
    assert not wards._thread.is_alive()
    wards.close()  # idempotent


class _FailingStore:
    def __init__(self, wards):
        self.wards = wards

    def device_wards(self):
        if self.wards is None:
            raise StorageError("metadata database error: connection lost")
        return dict(self.wards)


def test_a_failed_refresh_keeps_the_last_map(caplog):
    fake = _FailingStore({D1: "W1"})
    wards = WardDirectory(fake, refresh_s=0.02)
    wards.start()
    try:
        fake.wards = None
        deadline = time.monotonic() + 10
        while wards.counters["failures"] < 2:
            assert time.monotonic() < deadline, "no failed refresh counted"
            time.sleep(0.01)
        assert wards.ward_of(D1) == "W1"
    finally:
        wards.close()
    assert "keeping the last map" in caplog.text
    with pytest.raises(StorageError):  # a direct refresh says so
        wards.refresh()


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf),
                 st.booleans(), st.text(max_size=4), st.none()))
def test_bad_refresh_periods_are_refused(period):
    with pytest.raises(UsageError, match="refresh_s"):
        WardDirectory(_FailingStore({}), refresh_s=period)
