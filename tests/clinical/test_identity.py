"""One identity on MQTT and the APIs: the server's accounts backed by the clinical store,
with a nurse's topic scope following the devices of her ward's patients."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho
import pytest
from clinical_world import DEVICES, LOG2_N, MIN, build_world

from vitalcore.clinical import ClinicalAccounts, Resource, Role
from vitalcore.server import may_publish, may_subscribe
from vitalcore.server.topics import cmd_topic, device_name, up_topic
from vitalcore.storage.store import Store

D1, D2, D3, D4, D5, D6 = DEVICES


@pytest.fixture
def world(store):
    build_world(store)
    return store


def _live(store, **kw) -> ClinicalAccounts:
    # scope questions use the current time: put the stays at "now"
    return ClinicalAccounts(store, log2_n=LOG2_N, **kw)


def test_users_and_devices_log_in_with_their_clinical_secrets(world):
    acc = _live(world)
    nurse = acc.check("nurse1", "nurse1-pw")
    assert nurse is not None and nurse.role == "viewer" and nurse.scope is not None
    assert acc.check("nurse1", "wrong") is None and acc.check("nobody", "x") is None
    dev = acc.check(device_name(D1), f"dev-{D1:x}")
    assert dev is not None and dev.device_id == D1
    assert acc.check(device_name(D1), "wrong") is None
    assert acc.check(device_name(0x4242), "x") is None  # not registered
    assert "nurse1" in acc and "nobody" not in acc
    acc.add_user("integrator", "i-pw", role="viewer", grants=["vc/v1/dev/+/up"])
    assert acc.check("integrator", "i-pw").grants == ("vc/v1/dev/+/up",)  # file accounts too


def test_cached_login_sees_disabling_and_password_changes_at_once(world):
    acc = _live(world)
    assert acc.check("nurse2", "nurse2-pw") is not None
    assert acc.cached("nurse2", b"nurse2-pw") is not None
    world.set_user_disabled("root", "nurse2")
    assert acc.cached("nurse2", b"nurse2-pw") is None
    assert acc.check("nurse2", "nurse2-pw") is None
    world.set_user_disabled("root", "nurse2", False)
    assert acc.check("nurse2", "nurse2-pw") is not None
    world.set_password("nurse2", "nurse2", "new-pw")
    assert acc.cached("nurse2", b"nurse2-pw") is None
    assert acc.check("nurse2", "new-pw") is not None


def test_topic_scope_follows_the_ward_now(world):
    import time

    now = time.time_ns() // 1000
    world.admit("nurse1", "P1", "W1", devices=[D1], at_us=now - 2 * MIN)
    world.admit("nurse2", "P2", "W2", devices=[D2], at_us=now - 2 * MIN)
    acc = _live(world)
    nurse = acc.check("nurse1", "nurse1-pw")
    assert may_subscribe(nurse, f"vc/v1/dev/{device_name(D1)}/#")
    assert may_subscribe(nurse, f"$share/ward/{up_topic(D1)}")
    assert not may_subscribe(nurse, f"vc/v1/dev/{device_name(D2)}/up")
    assert not may_subscribe(nurse, "vc/v1/dev/+/up")  # wildcards over devices: no
    assert not may_subscribe(nurse, f"vc/v1/dev/{device_name(0x4242)}/up")
    assert may_publish(nurse, cmd_topic(D1)) and not may_publish(nurse, cmd_topic(D2))
    assert not may_publish(nurse, up_topic(D1))  # nobody but the device publishes data
    vendor = acc.check("vendor", "vendor-pw")
    assert not may_subscribe(vendor, f"vc/v1/dev/{device_name(D1)}/#")
    world.transfer("bedmgr", "P1", "W2", at_us=time.time_ns() // 1000)
    assert not may_subscribe(nurse, up_topic(D1))  # same principal, the patient moved
    nurse2 = acc.check("nurse2", "nurse2-pw")
    assert may_subscribe(nurse2, up_topic(D1)) and may_subscribe(nurse2, up_topic(D2))
    denied = [e for e in world.audit_log("root", now - MIN, 1 << 62, user="nurse1")
              if e.action == "mqtt_subscribe"]
    assert [e.outcome for e in denied].count("allowed") == 2
    assert [e.outcome for e in denied].count("denied") == 2  # D2 and D1 after the move


def test_remote_viewer_window_over_mqtt(world):
    import time

    now = time.time_ns() // 1000
    world.admit("nurse1", "P1", "W1", devices=[D1], at_us=now - MIN)
    world.create_user("root", "consult", "c-pw")
    world.grant_role("root", "consult", Role.REMOTE_VIEWER, Resource.patient("P1"),
                     valid_from_us=now - MIN, valid_until_us=now + 60 * MIN)
    acc = _live(world)
    p = acc.check("consult", "c-pw")
    assert may_subscribe(p, up_topic(D1)) and not may_publish(p, cmd_topic(D1))


def test_mqtt_server_with_clinical_accounts(world, tmp_path):
    """Real broker, real paho client: the ward nurse's SUBSCRIBE is granted for her
    patient's device and refused (0x87) for another ward's."""
    import time

    now = time.time_ns() // 1000
    world.admit("nurse1", "P1", "W1", devices=[D1], at_us=now - MIN)
    world.admit("nurse2", "P2", "W2", devices=[D2], at_us=now - MIN)
    from vitalcore.server import Server

    async def main():
        store = Store(tmp_path / "data", flush_interval_s=0)
        server = Server(store, _live(world), port=0)
        await server.start()
        loop = asyncio.get_running_loop()
        got: dict = {}
        done = {k: threading.Event() for k in ("conn", "sub")}
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ward-screen",
                        protocol=paho.MQTTv5)
        c.username_pw_set("nurse1", "nurse1-pw")
        c.on_connect = lambda cl, u, f, rc, p: (got.update(conn=rc), done["conn"].set())
        c.on_subscribe = lambda cl, u, mid, rcs, p: (got.update(sub=rcs), done["sub"].set())
        try:
            c.connect("127.0.0.1", server.port)
            c.loop_start()
            assert await loop.run_in_executor(None, done["conn"].wait, 10)
            assert got["conn"] == 0
            c.subscribe([(up_topic(D1), 1), (up_topic(D2), 1)])
            assert await loop.run_in_executor(None, done["sub"].wait, 10)
            assert [int(rc.value) for rc in got["sub"]] == [1, 0x87]
        finally:
            c.disconnect()
            c.loop_stop()
            await server.stop()
            store.close()

    asyncio.run(asyncio.wait_for(main(), 30))
