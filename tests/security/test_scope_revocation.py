"""Live subscriptions follow the clinical scope after SUBSCRIBE (vitalcore.server.session).

A nurse subscribed to a device stops receiving it once its patient is transferred out of
her ward, and a disabled user's subscriptions stop delivering: within
``SCOPE_RECHECK_S`` (lowered for the test), with gmqtt clients on a real server and
store, the clinical store changed through its API meanwhile. An integrator with a
file grant keeps receiving, so the messages were routed.
"""

from __future__ import annotations

import asyncio
import time

import gmqtt
from clinical_world import LOG2_N, ROOT, T0, build_world
from gmqtt.mqtt.constants import MQTTv50

from vitalcore import codec
from vitalcore.clinical import ClinicalAccounts, Resource, open_store
from vitalcore.server import Server, device_name, up_topic
from vitalcore.server import session as session_mod
from vitalcore.storage.store import Store

DEV_A, DEV_B = 0x1001, 0x1003
RECHECK_S = 0.3


class Listener:
    """A gmqtt client recording the (topic, seq) of what it receives."""

    def __init__(self, name: str) -> None:
        self.got: list[tuple[str, int]] = []
        self.client = gmqtt.Client(f"scope-{name}")

        def on_message(client, topic, payload, qos, properties) -> int:
            self.got.append((topic, _seq(payload)))
            return 0

        self.client.on_message = on_message


def _seq(payload: bytes) -> int:
    return int.from_bytes(payload[16:20], "little")  # header: docs/protocol.md §2


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_subscriptions_end_when_the_scope_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(session_mod, "SCOPE_RECHECK_S", RECHECK_S)
    cs = open_store(str(tmp_path / "clinical.sqlite"), log2_n=LOG2_N)
    build_world(cs)
    cs.admit("nurse1", "P-A", "W1", "W1-B1", devices=[DEV_A], at_us=T0 + 10)
    cs.admit("nurse2", "P-B", "W2", "W2-B1", devices=[DEV_B], at_us=T0 + 10)
    accounts = ClinicalAccounts(cs, cache_ttl_s=0)
    accounts.add_user("integrator", "integrator-pw", "viewer", grants=["vc/v1/dev/+/up"])
    store = Store(tmp_path / "data", flush_interval_s=0)
    server = Server(store, accounts, port=0)

    def frame(dev: int, seq: int) -> bytes:
        out = codec.encode_numerics(dev, seq, T0 + seq * 1000, [(1, 70.0)])
        assert _seq(out) == seq
        return out

    async def main() -> None:
        await server.start()
        nurse1, nurse2, integ = Listener("n1"), Listener("n2"), Listener("int")
        devices = {d: gmqtt.Client(f"scope-dev-{d:x}") for d in (DEV_A, DEV_B)}
        try:
            for who, (user, pw) in ((nurse1, ("nurse1", "nurse1-pw")),
                                    (nurse2, ("nurse2", "nurse2-pw")),
                                    (integ, ("integrator", "integrator-pw"))):
                who.client.set_auth_credentials(user, pw)
                await who.client.connect("127.0.0.1", server.port, version=MQTTv50)
            for d, c in devices.items():
                c.set_auth_credentials(device_name(d), f"dev-{d:x}")
                await c.connect("127.0.0.1", server.port, version=MQTTv50)
            nurse1.client.subscribe(up_topic(DEV_A), qos=1)
            nurse2.client.subscribe(up_topic(DEV_B), qos=1)
            integ.client.subscribe("vc/v1/dev/+/up", qos=1)
            await asyncio.sleep(0.3)  # SUBACKs in
            devices[DEV_A].publish(up_topic(DEV_A), frame(DEV_A, 1), qos=1)
            devices[DEV_B].publish(up_topic(DEV_B), frame(DEV_B, 1), qos=1)
            await _until(lambda: len(integ.got) == 2 and nurse1.got and nurse2.got)
            # P-A leaves W1; nurse2 is disabled (both through the clinical API, now)
            cs.transfer("bedmgr", "P-A", "W2", "W2-B2")
            cs.set_user_disabled(ROOT, "nurse2")
            await asyncio.sleep(RECHECK_S + 0.2)
            for seq in (2, 3):
                devices[DEV_A].publish(up_topic(DEV_A), frame(DEV_A, seq), qos=1)
                devices[DEV_B].publish(up_topic(DEV_B), frame(DEV_B, seq), qos=1)
            await _until(lambda: len(integ.got) == 6)
            await asyncio.sleep(0.3)
            assert nurse1.got == [(up_topic(DEV_A), 1)]
            assert nurse2.got == [(up_topic(DEV_B), 1)]
            st = server.stats()
            assert st["acl_revoked_subscriptions"] == 2
            # nurse2 (W2) now may read P-A's device: a new subscription is granted
            cs.set_user_disabled(ROOT, "nurse2", False)
            nurse2.client.subscribe(up_topic(DEV_A), qos=1)
            await asyncio.sleep(0.3)
            devices[DEV_A].publish(up_topic(DEV_A), frame(DEV_A, 4), qos=1)
            await _until(lambda: (up_topic(DEV_A), 4) in nurse2.got)
        finally:
            for c in (nurse1.client, nurse2.client, integ.client, *devices.values()):
                await c.disconnect()
            await server.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        store.close()
        cs.close()
    audit = open_store(str(tmp_path / "clinical.sqlite"), log2_n=LOG2_N)
    try:
        rows = audit.audit_log(ROOT, 0, 2**62, user="nurse1")
    finally:
        audit.close()
    assert (str(Resource.device(DEV_A)), "denied") in [
        (r.resource, r.outcome) for r in rows if r.action == "mqtt_subscribe"]
