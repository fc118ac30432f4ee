"""Alarm events on ward-scoped MQTT topics through an injected publish function."""

from __future__ import annotations

import asyncio

import msgspec
from alarm_helpers import START

from vitalcore.alarms.model import Alarm, AlarmCategory, AlarmEvent, AlarmPriority, EventKind
from vitalcore.alarms.mqtt import AlarmPublisher, event_topic
from vitalcore.server.topics import filter_covers


def _ev(dev, value=float("nan")):
    a = Alarm("id", dev, "asystole", AlarmCategory.ARRHYTHMIA, AlarmPriority.HIGH, "m",
              START, START, value)
    return AlarmEvent(1, EventKind.RAISED, START, a)


def test_topics_by_ward_and_payload():
    async def main():
        sent = []
        wards = {1: "icu-2", 2: "bad/ward", 3: "+", 4: None}

        def ward_of(dev):
            if dev == 5:
                raise RuntimeError("organisation service down")
            return wards[dev]

        pub = AlarmPublisher(lambda *a: sent.append(a), ward_of)
        for dev in (1, 2, 3, 4, 5, 0):
            pub(_ev(dev, 3.5 if dev == 1 else float("nan")))
        await asyncio.sleep(0.01)
        return sent, pub

    sent, pub = asyncio.run(main())
    topics = [s[0] for s in sent]
    assert topics == [
        "vc/v1/alarms/icu-2/0000000000000001/event",
        "vc/v1/alarms/_unassigned/0000000000000002/event",
        "vc/v1/alarms/_unassigned/0000000000000003/event",
        "vc/v1/alarms/_unassigned/0000000000000004/event",
        "vc/v1/alarms/_unassigned/0000000000000005/event",
        "vc/v1/alarms/_system/0000000000000000/event",
    ]
    assert all(s[2] == 1 and s[3] is False for s in sent)
    body = msgspec.json.decode(sent[0][1])
    assert body["priority"] == "high" and body["value"] == 3.5 and body["device_id"] == "0" * 15 + "1"
    assert msgspec.json.decode(sent[1][1])["value"] is None
    assert pub.counters == {"published": 6, "bad_ward": 2, "ward_errors": 1, "publish_errors": 0}
    assert filter_covers("vc/v1/alarms/icu-2/#", event_topic("icu-2", 1))
    assert not filter_covers("vc/v1/alarms/icu-2/#", event_topic("icu-3", 1))


def test_publish_failure_is_counted():
    async def main():
        def boom(*a):
            raise ValueError("broker closed")

        pub = AlarmPublisher(boom, lambda d: "w")
        pub(_ev(1))
        await asyncio.sleep(0.01)
        return pub

    assert asyncio.run(main()).counters["publish_errors"] == 1


def test_end_to_end_through_the_embedded_broker(tmp_path):
    """Frames committed to a Store -> engine -> AlarmPublisher -> Broker -> gmqtt desk."""
    gmqtt = __import__("pytest").importorskip("gmqtt")
    from alarm_helpers import Clock

    from vitalcore import codec
    from vitalcore.alarms import AlarmConfig, AlarmEngine, Timing
    from vitalcore.protocol import NumericCode
    from vitalcore.server import Accounts, Server
    from vitalcore.storage import Store

    acc = Accounts(log2_n=10)
    acc.add_user("icu-desk", "pw", role="viewer", grants=["vc/v1/alarms/icu-2/#"])
    store = Store(tmp_path / "s", sync="none", flush_interval_s=0)
    clock = Clock()
    engine = AlarmEngine(AlarmConfig(timing={"hr.high": Timing(0.0, 2.0)}), clock=clock,
                         monotonic=clock)

    async def main():
        server = Server(store, acc, host="127.0.0.1", port=0)
        await server.start()
        got = []
        desk = gmqtt.Client("desk")
        desk.set_auth_credentials("icu-desk", "pw")
        desk.on_message = lambda c, topic, payload, qos, props: got.append((topic, payload)) or 0
        try:
            engine.add_listener(AlarmPublisher(server.broker.publish,
                                               {0x51: "icu-2", 0x52: "icu-3"}.get))
            engine.attach(store)
            await desk.connect("127.0.0.1", server.port)
            desk.subscribe("vc/v1/alarms/icu-2/#", qos=1)
            await asyncio.sleep(0.2)
            for dev in (0x51, 0x52):
                store.feed(codec.encode_numerics(dev, 0, START, [(NumericCode.HR, 150.0)]), dev)
            store.commit()
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # nothing else (icu-3) may arrive
        finally:
            await desk.disconnect()
            engine.close()
            await server.stop()
        return got

    got = asyncio.run(main())
    store.close()
    assert [t for t, _ in got] == ["vc/v1/alarms/icu-2/0000000000000051/event"]
    body = msgspec.json.decode(got[0][1])
    assert (body["kind"], body["code"], body["value"]) == ("raised", "hr.high", 150.0)
