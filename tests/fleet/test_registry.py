"""What users do: models, registration, fleet status, replacement, manual readings,
drill-down; every bad request is a clear error, audited, and changes nothing."""

from __future__ import annotations

import pytest
from clinical_world import DEVICES, T0
from fleet_world import HOUR

from vitalcore import protocol as P
from vitalcore.clinical import DeviceState
from vitalcore.errors import AccessDenied, UsageError
from vitalcore.fleet import Alert, AssetStatus, EventKind, Kind, StatusReading, month_bounds

D1, D2 = DEVICES[0], DEVICES[1]
BAT = int(P.AccessoryKind.BATTERY)
S = 1_000_000


def audit(store, action):
    """``(user, outcome, detail)`` of the audit records of ``action``."""
    with store.db.transaction(write=False) as tx:
        rows = tx.all("SELECT user_name, outcome, detail FROM audit WHERE action = ? "
                      "ORDER BY id", (action,))
    return rows


def snapshot(store):
    with store.db.transaction(write=False) as tx:
        return [tx.all(f"SELECT * FROM {t} ORDER BY 1") for t in
                ("fleet_assets", "fleet_models", "fleet_installs", "fleet_events")]


def test_register_and_adopt_an_accessory_seen_before(world):
    store, tracker = world
    tracker.ingest([StatusReading(D1, T0, 10, ((BAT, "BAT-9", 50 * HOUR),))])
    seen = tracker.asset("battery", "BAT-9")
    assert not seen.registered and seen.model is None
    tracker.define_model("biomed", "BP-2000", "battery", 2000, warn_h=100, life_days=730)
    a = tracker.register_asset("biomed", "battery", "BAT-9", model="BP-2000", hospital_id="H1",
                               commissioned_us=T0)
    assert (a.asset_id, a.registered, a.hours, a.limit_h, a.warn_h) == (
        seen.asset_id, True, 50, 2000, 100)
    assert a.expiry_us == T0 + 730 * 86_400 * S
    assert audit(store, "fleet_register_asset")[-1][:2] == ("biomed", "allowed")


def test_duplicate_serial_is_refused_audited_and_changes_nothing(world):
    store, tracker = world
    tracker.register_asset("biomed", Kind.LEAD_WIRE, "LW-1", model="LW-5")
    before = snapshot(store)
    with pytest.raises(UsageError, match="duplicate serial: lead_wire 'LW-1'"):
        tracker.register_asset("biomed", "lead_wire", "LW-1", model="LW-6")
    assert snapshot(store) == before
    user, outcome, detail = audit(store, "fleet_register_asset")[-1]
    assert (user, outcome) == ("biomed", "error") and "duplicate serial" in detail
    # unique per kind only: a battery may carry the same serial
    assert tracker.register_asset("biomed", "battery", "LW-1").kind is Kind.BATTERY


def test_terminal_registration_needs_a_known_device(world):
    store, tracker = world
    with pytest.raises(UsageError, match="unknown device 000000000000beef"):
        tracker.register_asset("biomed", "terminal", "T-X", device_id=0xBEEF)
    assert audit(store, "fleet_register_asset")[-1][1] == "error"
    t = tracker.register_asset("biomed", "terminal", "T-1", device_id=D1)
    assert (t.model, t.hospital_id, t.device_id) == ("VC-W1", "H1", D1)
    with pytest.raises(UsageError, match="belongs to terminal 'T-1'"):
        tracker.register_asset("biomed", "terminal", "T-2", device_id=D1)
    with pytest.raises(UsageError, match="needs its device_id"):
        tracker.register_asset("biomed", "terminal", "T-3")
    with pytest.raises(UsageError, match="only a terminal"):
        tracker.register_asset("biomed", "battery", "B-3", device_id=D2)


def test_terminal_seen_first_is_adopted_with_its_hours(world):
    _, tracker = world
    tracker.ingest([StatusReading(D2, T0, 900 * HOUR), StatusReading(D2, T0 + 60 * S,
                                                                       900 * HOUR + 60)])
    t = tracker.register_asset("biomed", "terminal", "T-22", device_id=D2)
    assert t.serial == "T-22" and t.hours == pytest.approx(900 + 60 / HOUR)
    assert len(tracker.assets(kind="terminal")) == 1


BAD_REQUESTS = [
    (lambda t: t.asset("battery", "NOPE"), "unknown battery 'NOPE'"),
    (lambda t: t.asset("toaster", "X"), "unknown asset kind 'toaster'"),
    (lambda t: t.asset("battery", "x" * 17), "serial must be 1..16"),
    (lambda t: t.terminal(0x777), "no terminal in service has device id"),
    (lambda t: t.drill_down("biomed", "battery", "NOPE"), "unknown battery"),
    (lambda t: t.define_model("biomed", "M", "battery", 0), "limit_h must be"),
    (lambda t: t.define_model("biomed", "M", "battery", 10, warn_h=11), "warn_h"),
    (lambda t: t.set_status("biomed", "battery", "NOPE", "lost"), "unknown battery"),
    (lambda t: t.set_status("biomed", "battery", "NOPE", "replaced"), "use replace"),
    (lambda t: t.usage(T0, T0), "empty time range"),
    (lambda t: t.due(expiry_days=-1), "expiry_days"),
]


def test_bad_requests_are_usage_errors(world):
    store, tracker = world
    tracker.register_asset("biomed", "battery", "BAT-0")
    before = snapshot(store)
    for call, match in BAD_REQUESTS:  # one world for all: setting one up costs ~1 s
        with pytest.raises(UsageError, match=match):
            call(tracker)
        assert snapshot(store) == before
    user, outcome, detail = audit(store, "fleet_drill_down")[-1]
    assert (user, outcome) == ("biomed", "error") and "unknown battery" in detail


def test_permissions_are_checked_and_denials_audited(world):
    store, tracker = world
    tracker.register_asset("biomed", "battery", "BAT-P", hospital_id="H1")
    with pytest.raises(AccessDenied):
        tracker.register_asset("nurse1", "battery", "BAT-Q")
    with pytest.raises(AccessDenied):
        tracker.drill_down("nurse1", "battery", "BAT-P")
    with pytest.raises(AccessDenied):
        tracker.set_status("admin1", "battery", "BAT-P", "lost")  # manages, does not maintain
    assert [r[:2] for r in audit(store, "fleet_drill_down")] == [("nurse1", "denied")]
    assert audit(store, "fleet_register_asset")[-1][:2] == ("nurse1", "denied")
    assert tracker.asset("battery", "BAT-P").status is AssetStatus.ACTIVE
    with pytest.raises(UsageError, match="unknown battery"):  # the refused one is not there
        tracker.asset("battery", "BAT-Q")


def test_manual_reading_going_backwards_is_refused_unless_a_reset(world):
    store, tracker = world
    tracker.register_asset("biomed", "battery", "BAT-H")
    tracker.record_reading("biomed", "battery", "BAT-H", 1000 * HOUR, T0)
    tracker.record_reading("biomed", "battery", "BAT-H", 1001 * HOUR, T0 + HOUR * S)
    with pytest.raises(UsageError, match="hours going backwards"):
        tracker.record_reading("biomed", "battery", "BAT-H", 10, T0 + 2 * HOUR * S)
    with pytest.raises(UsageError, match="not newer"):
        tracker.record_reading("biomed", "battery", "BAT-H", 1002 * HOUR, T0 + HOUR * S)
    assert [r[1] for r in audit(store, "fleet_record_reading")] == [
        "allowed", "allowed", "error", "error"]
    assert tracker.asset("battery", "BAT-H").hours == 1001
    a = tracker.record_reading("biomed", "battery", "BAT-H", 1800, T0 + 2 * HOUR * S, reset=True)
    assert (a.hours, a.resets) == (1001.5, 1)
    (ev,) = tracker.events(kinds={"reset"})
    assert ev.detail["last_raw_s"] == 1001 * HOUR


def test_spare_pool_lost_found_and_replacement(world):
    _, tracker = world
    tracker.define_model("biomed", "LW-5", "lead_wire", 4380)
    tracker.register_asset("biomed", "lead_wire", "LW-S", model="LW-5")
    assert tracker.set_status("biomed", "lead_wire", "LW-S", "spare").status is AssetStatus.SPARE
    assert [a.serial for a in tracker.assets(status="spare")] == ["LW-S"]
    tracker.set_status("biomed", "lead_wire", "LW-S", AssetStatus.LOST, note="not on ward")
    lw = int(P.AccessoryKind.LEAD_WIRE)
    tracker.ingest([StatusReading(D1, T0, 5, ((lw, "LW-S", 20 * HOUR),))])
    assert tracker.asset("lead_wire", "LW-S").status is AssetStatus.ACTIVE
    assert [e.kind for e in tracker.events(asset_id=tracker.asset("lead_wire", "LW-S").asset_id)
            ] == [EventKind.STATUS, EventKind.STATUS, EventKind.FIRST_SEEN, EventKind.FOUND]
    new = tracker.replace("biomed", "lead_wire", "LW-S", "LW-N", note="worn")
    old = tracker.asset("lead_wire", "LW-S")
    assert (old.status, old.hours) == (AssetStatus.REPLACED, 20)
    assert (new.status, new.model, new.hours) == (AssetStatus.ACTIVE, "LW-5", 0)
    with pytest.raises(UsageError, match="replaced already"):
        tracker.replace("biomed", "lead_wire", "LW-S", "LW-Z")
    with pytest.raises(UsageError, match="record is closed"):
        tracker.set_status("biomed", "lead_wire", "LW-S", "active")
    assert all(d.asset.serial != "LW-S" for d in tracker.due())


def test_terminal_rebound_to_a_new_device_id_keeps_its_hours(world):
    _, tracker = world
    tracker.register_asset("biomed", "terminal", "T-1", device_id=D1)
    tracker.ingest([StatusReading(D1, T0, 5000 * HOUR)])
    tracker.rebind_terminal("biomed", "T-1", D2)  # new mainboard, new id, fresh counter
    tracker.ingest([StatusReading(D2, T0 + 600 * S, 120)])
    t = tracker.terminal(D2)
    assert (t.serial, t.hours) == ("T-1", pytest.approx(5000 + 120 / HOUR))
    with pytest.raises(UsageError):
        tracker.terminal(D1)


def test_device_states_through_a_patient_change(world):
    """in use → cleaning → function check → available, read in the terminal's drill-down."""
    store, tracker = world
    tracker.register_asset("biomed", "terminal", "T-1", device_id=D1)
    store.admit("nurse1", "P1", "W1", devices=[D1], at_us=T0 + 10)
    assert tracker.drill_down("biomed", "terminal", "T-1").clinical_state == DeviceState.IN_USE
    store.discharge("nurse1", "P1", at_us=T0 + HOUR * S)
    store.record_cleaning("biomed", D1, at_us=T0 + HOUR * S + 600 * S)
    mid = tracker.drill_down("biomed", "terminal", device_id=D1)
    assert mid.clinical_state == DeviceState.TO_CHECK
    store.record_function_check("biomed", D1, True, "REF-SIM-7", at_us=T0 + 2 * HOUR * S)
    detail = tracker.drill_down("biomed", "terminal", "T-1")
    assert detail.clinical_state == DeviceState.AVAILABLE
    assert [e.kind for e in detail.clinical_events] == [
        "registered", "checked", "bound", "released", "cleaned", "checked"]
    assert tracker.statistics().clinical_states["available"] == len(DEVICES)


def test_statistics_count_kinds_alerts_and_hours(world):
    _, tracker = world
    lw = int(P.AccessoryKind.LEAD_WIRE)
    tracker.ingest([StatusReading(D1, T0, 100 * HOUR, ((BAT, "B1", 4000 * HOUR),
                                                       (lw, "L1", 4380 * HOUR))),
                    StatusReading(D2, T0, 300 * HOUR, ((BAT, "B2", 10 * HOUR),))])
    s = tracker.statistics()
    assert (s.assets, s.by_kind) == (5, {"battery": 2, "lead_wire": 1, "terminal": 2})
    assert s.by_alert == {"ok": 3, "over_limit": 1, "warning": 1}
    assert s.hours_by_kind["terminal"] == 400 and s.mean_hours_by_kind["battery"] == 2005
    assert s.unregistered == 5
    due = tracker.due()
    assert [(d.asset.serial, d.alert) for d in due] == [("L1", Alert.OVER_LIMIT),
                                                       ("B1", Alert.WARNING)]


def test_model_limits_are_configurable(world):
    _, tracker = world
    tracker.ingest([StatusReading(D1, T0, 0, ((BAT, "B1", 1000 * HOUR),))])
    assert tracker.asset("battery", "B1").alert is Alert.OK
    tracker.define_model("biomed", "SHORT", "battery", 1050, warn_h=60)
    tracker.register_asset("biomed", "battery", "B1", model="SHORT")
    assert tracker.asset("battery", "B1").alert is Alert.WARNING
    with pytest.raises(UsageError, match="is a battery model"):
        tracker.define_model("biomed", "SHORT", "lead_wire", 10)


def test_usage_is_split_at_month_boundaries(world):
    store, tracker = world
    h = HOUR * S
    nov30_23h = T0 + 4 * 24 * h + 23 * h  # T0 is 2025-11-26T00:00Z
    store.admit("nurse1", "P9", "W1", devices=[D1], at_us=nov30_23h)
    store.discharge("nurse1", "P9", at_us=nov30_23h + 2 * h)
    rows = tracker.usage(T0, T0 + 40 * 24 * h)
    assert [(u.ward_id, u.month, u.bound_h, u.devices) for u in rows] == [
        ("W1", "2025-11", 1.0, 1), ("W1", "2025-12", 1.0, 1)]
    assert month_bounds(nov30_23h, nov30_23h + 2 * h) == [
        ("2025-11", nov30_23h, nov30_23h + h), ("2025-12", nov30_23h + h, nov30_23h + 2 * h)]
