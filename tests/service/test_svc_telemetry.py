"""Orders that open by themselves: simulator STATUS frames and alarm-engine events."""

from __future__ import annotations

import asyncio

import pytest
from service_world import DEVICES, ROOT

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.alarms import (
    Alarm,
    AlarmCategory,
    AlarmEngine,
    AlarmEvent,
    AlarmPriority,
    EventKind,
)
from vitalcore.errors import UsageError
from vitalcore.service import OrderStatus, RequestType, Severity, TelemetryConfig, TelemetryWatch
from vitalcore.simulator import VirtualWearable

DEV = DEVICES[2]
STATUS = P.FrameType.STATUS


def _status_only(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[4] == STATUS]


def _decode(frames: list[bytes]):
    dec = codec.FrameDecoder()
    for f in frames:
        dec.feed(f)
    return dec.take()


def _leads_off(dev: int, seq: int, ts_us: int) -> bytes:
    return codec.encode_status(dev, seq, ts_us, battery=80, flags=P.StatusFlag.LEADS_OFF,
                               leads_off=0b1, carrier=P.Carrier.LTE, rssi=-70)


def test_repeated_leads_off_from_the_alarm_engine_opens_one_order(world):
    """A simulated wearable whose electrode keeps coming off: its status frames go
    through the real alarm engine; the fifth leads-off alarm within the hour opens a
    work order by itself, later ones add to it."""
    t0 = world.clock.now_us()
    vw = VirtualWearable(DEV, t0, seed=3)
    engine_now = [t0 / 1e6]
    engine = AlarmEngine(clock=lambda: engine_now[0])
    watch = TelemetryWatch(world.desk)

    async def run() -> None:
        sub = engine.subscribe(device_ids=[DEV])
        follower = asyncio.create_task(watch.follow(sub))
        engine.start()
        seq = 10_000
        for minute_ in range(1, 15):  # electrode off for a moment every ~2 minutes
            t = t0 + minute_ * 60_000_000
            frames = _status_only(vw.frames_until(t))
            if minute_ % 2 == 0:
                seq += 1
                frames.append(_leads_off(DEV, seq, t - 5_000_000))
            engine_now[0] = t / 1e6
            engine.submit(_decode(frames))
            assert engine.wait_idle(10)
            await asyncio.sleep(0.01)  # let the subscription deliver on this loop
        sub.close()
        await asyncio.wait_for(follower, 10)

    try:
        asyncio.run(run())
    finally:
        engine.close()
    orders = world.desk.orders(device_id=DEV)
    assert len(orders) == 1
    o = orders[0]
    assert o.auto_cause == "leads_off.repeated" and o.channel.value == "telemetry"
    assert o.severity is Severity.GENERAL and o.fault_type == "leads_off.repeated"
    assert o.evidence["raised"] == 5 and o.evidence["alarm"] == "leads_off"
    assert o.reported_us == t0 + 10 * 60_000_000  # the 5th raise: minute 10
    assert o.repeat_count == 1 and watch.counters["orders_opened"] == 1
    assert [n.kind for n in world.notices] == ["assigned"]
    audit = [e for e in world.store.audit_log(ROOT, 0, 2**62) if e.action == "open_from_telemetry"]
    assert [(e.user, e.outcome) for e in audit] == [("system:telemetry", "allowed")]


def _alarm_event(dev: int, code: str, ts_us: int, seq: int,
                 kind: EventKind = EventKind.RAISED) -> AlarmEvent:
    a = Alarm(f"{dev:016x}-{code}-{seq}", dev, code, AlarmCategory.TECHNICAL,
              AlarmPriority.MEDIUM, "device offline", ts_us, ts_us)
    return AlarmEvent(seq, kind, ts_us, a)


def test_link_loss_counts_only_raises_within_the_window(sqlite_world):
    w = sqlite_world
    watch = TelemetryWatch(w.desk, TelemetryConfig(link_loss_count=3, repeat_window_s=600))
    t = w.clock.now_us()
    m = 60_000_000
    results = [watch.on_alarm_event(_alarm_event(DEV, "device.offline", t + i * 7 * m, i))
               for i in range(3)]  # 0, 7, 14 min: the first falls out of a 10 min window
    assert results == [None, None, None]
    assert watch.on_alarm_event(_alarm_event(DEV, "device.offline", t + 15 * m, 9,
                                             EventKind.ENDED)) is None
    got = watch.on_alarm_event(_alarm_event(DEV, "device.offline", t + 16 * m, 10))
    assert got is not None and got.created and got.order.auto_cause == "link_loss.repeated"
    assert got.order.evidence["raised"] == 3


def test_fault_codes_in_status_frames_open_and_repeat(world):
    t = world.clock.now_us()
    watch = TelemetryWatch(world.desk)
    frames = [codec.encode_status(DEV, 1, t, battery=90, fault=0x12),
              codec.encode_status(DEV, 2, t + 10_000_000, battery=90, fault=0x12),  # same
              codec.encode_status(DEV, 3, t + 20_000_000, battery=90, fault=0),
              codec.encode_status(DEV, 4, t + 30_000_000, battery=90, fault=0x12)]
    got = watch.observe_batch(_decode(frames))
    assert [g.created for g in got] == [True, False]
    o = world.desk.order(got[0].order.order_id)
    assert o.auto_cause == "device_fault:0012" and o.severity is Severity.SERIOUS
    assert o.repeat_count == 2 and o.evidence["fault_code"] == 0x12
    assert [e.kind for e in world.desk.order_events(o.order_id)].count("repeated") == 1


def test_battery_that_does_not_hold_charge(sqlite_world):
    w = sqlite_world
    t = w.clock.now_us()
    watch = TelemetryWatch(w.desk)
    healthy = VirtualWearable(DEVICES[3], t)  # drains ~8 %/h
    assert watch.observe_batch(_decode(_status_only(healthy.frames_until(t + 3_600_000_000)))) == []
    minute_ = 60_000_000
    failing = [codec.encode_status(DEV, i, t + i * 5 * minute_, battery=100 - 4 * i)
               for i in range(9)]  # 48 %/h
    got = watch.observe_batch(_decode(failing))
    assert len(got) == 1 and got[0].order.auto_cause == "battery.not_holding_charge"
    assert got[0].order.evidence["drain_pct_per_h"] == pytest.approx(48.0)
    charging = [codec.encode_status(DEVICES[4], i, t + i * 5 * minute_, battery=100 - 4 * i,
                                    flags=P.StatusFlag.EXTERNAL_POWER) for i in range(9)]
    assert watch.observe_batch(_decode(charging)) == []


def test_accessory_over_limit_entry_point_deduplicates_per_accessory(world):
    d, t = world.desk, world.clock.now_us()
    ev = {"accessory": "LW-0001", "hours": 4381, "limit_h": 4380}
    a = d.open_from_telemetry(DEV, "accessory.over_limit:LW-0001", ev, t)
    b = d.open_from_telemetry(DEV, "accessory.over_limit:LW-0001", ev, t + 3_600_000_000)
    c = d.open_from_telemetry(DEV, "accessory.over_limit:BAT-0002", ev, t + 3_600_000_000)
    assert a.created and not b.created and c.created
    assert a.order.order_id == b.order.order_id != c.order.order_id
    assert a.order.request_type is RequestType.PREVENTIVE_MAINTENANCE
    assert a.order.severity is Severity.MINOR and "LW-0001" in a.order.description
    assert d.order(a.order.order_id).repeat_count == 2
    d.cancel("biomed", a.order.order_id, "replaced during the round", at_us=t + 7_200_000_000)
    again = d.open_from_telemetry(DEV, "accessory.over_limit:LW-0001", ev, t + 7_300_000_000)
    assert again.created and d.order(a.order.order_id).status is OrderStatus.CANCELLED


def test_an_accessory_reaching_its_limit_in_the_fleet_opens_an_order(world):
    from vitalcore.fleet import StatusReading, open_fleet

    fleet = open_fleet(world.store)
    watch = TelemetryWatch(world.desk)
    fleet.add_listener(watch.on_fleet_event)
    t = world.clock.now_us()
    fleet.define_model(ROOT, "BAT-SHORT", "battery", limit_h=2, warn_h=1, at_us=t)
    fleet.register_asset("biomed", "battery", "BAT-0042", model="BAT-SHORT", at_us=t)
    fleet.register_asset("biomed", "battery", "BAT-0043", model="BAT-SHORT", at_us=t)
    bat = int(P.AccessoryKind.BATTERY)
    for hours in (0, 1.5, 2.5):  # BAT-0043 in DEV's STATUS frames; BAT-0042 a spare
        s = int(hours * 3600)
        fleet.ingest([StatusReading(DEV, t + s * 1_000_000, 1000 + s, ((bat, "BAT-0043", s),))])
        fleet.record_reading("biomed", "battery", "BAT-0042", s, t + s * 1_000_000, at_us=t)
    (order,) = world.desk.orders(device_id=DEV)
    assert order.auto_cause == "accessory.over_limit:BAT-0043"
    assert order.request_type is RequestType.PREVENTIVE_MAINTENANCE
    assert watch.counters["orders_opened"] == 1 and watch.counters["unplaced"] == 1


def test_unknown_devices_and_causes_are_clear_errors(sqlite_world):
    world = sqlite_world
    t = world.clock.now_us()
    with pytest.raises(UsageError, match="unknown device 000000000000abcd"):
        world.desk.open_from_telemetry(0xABCD, "device_fault:0001", {}, t)
    with pytest.raises(UsageError, match="unknown telemetry cause 'smoke'"):
        world.desk.open_from_telemetry(DEV, "smoke", {}, t)
    with pytest.raises(UsageError, match="JSON-serialisable"):
        world.desk.open_from_telemetry(DEV, "device_fault:0001", {"x": object()}, t)
    watch = TelemetryWatch(world.desk)
    got = watch.observe_batch(_decode([codec.encode_status(0xABCD, 1, t, fault=7),
                                       codec.encode_status(DEV, 1, t, fault=7)]))
    assert len(got) == 1 and watch.counters["unknown_devices"] == 1  # the other one goes on
    assert len(world.desk.orders()) == 1
