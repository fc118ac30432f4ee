"""Uplink ingest: device PUBLISHes end in the store, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import json
import time

import gmqtt
import pytest
from conftest import make_store
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from helpers import DEV, DEV2, DEV_NAME, SECRET, RawClient, numerics, serving, wait_for

from vitalcore.errors import BackPressureError
from vitalcore.mqtt import Properties, PubAck, PubComp, Publish, PubRec, PubRel
from vitalcore.server import up_json_topic, up_topic


class RecordingSink:
    """Wraps a Store: records commits and when each became durable; durability is
    reported ``delay`` s late, so an early acknowledgement would be visible."""

    def __init__(self, store, delay: float = 0.0, refuse_feeds: int = 0) -> None:
        self.store = store
        self.delay = delay
        self.refuse_feeds = refuse_feeds
        self.commits: list[int] = []
        self.durable_done: set[int] = set()
        self.lsn_of: dict[bytes, int] = {}  # payload -> LSN of the commit holding it
        self._fed: list[bytes] = []

    def feed(self, payload, device_id):
        if self.refuse_feeds:
            self.refuse_feeds -= 1
            raise BackPressureError("test: store full")
        self._fed.append(bytes(payload))
        return self.store.feed(payload, device_id)

    def feed_json(self, doc, device_id):
        return self.store.feed_json(doc, device_id)

    def commit(self):
        lsn = self.store.commit()
        if lsn:
            self.commits.append(lsn)
            self.lsn_of.update(dict.fromkeys(self._fed, lsn))
        self._fed.clear()
        return lsn

    async def durable(self, lsn):
        await asyncio.sleep(self.delay)
        await self.store.durable(lsn)
        assert self.store.wal.durable_lsn >= lsn
        self.durable_done.add(lsn)


@pytest.mark.parametrize("version", [MQTTv311, MQTTv50])
def test_gmqtt_device_qos012_uplink_stored(run, tmp_path, version):
    async def main():
        async with serving(tmp_path) as srv:
            c = gmqtt.Client(f"dev-{version}")
            c.set_auth_credentials(DEV_NAME, SECRET)
            await c.connect("127.0.0.1", srv.port, version=version)
            for seq in range(30):
                c.publish(up_topic(DEV), numerics(seq), qos=seq % 3)
            await wait_for(lambda: srv.store.stats()["frames"] == 30)
            await asyncio.wait_for(c._persistent_storage.wait_empty(), 5)  # all acks in
            await c.disconnect()
            st = srv.stats()
            assert st["uplink_messages"] == 30 and st["uplink_frames"] == 30
            assert st["connections_accepted"] == 1 and st.get("protocol_errors", 0) == 0
            assert srv.store.read_numerics(DEV, 0, 2**62).num_rows == 30

    run(main())


@pytest.mark.parametrize("level", [4, 5])
def test_ack_only_after_durable(run, tmp_path, level):
    """Each PUBACK/PUBREC reaches the client only after its commit is durable (sync=always,
    durability reported 50 ms late), and acknowledgements keep the PUBLISH order."""

    async def main():
        store = make_store(tmp_path / "s", sync="always")
        sink = RecordingSink(store, delay=0.05)
        async with serving(tmp_path, store=sink) as srv:
            c, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, level)
            assert ack.reason_code == 0
            # one at a time: the ack of message k must find commit k durable
            for seq in range(1, 4):
                t0 = time.monotonic()
                c.send(Publish(up_topic(DEV), numerics(seq), qos=1, packet_id=seq))
                p = await c.recv()
                assert isinstance(p, PubAck) and p.packet_id == seq
                assert time.monotonic() - t0 >= 0.05
                assert sink.lsn_of[numerics(seq)] in sink.durable_done
                assert store.wal.durable_lsn >= sink.lsn_of[numerics(seq)]
            # pipelined QoS 1 and 2: acks in order, each after durability
            pids = list(range(10, 60))
            for pid in pids:
                c.send(Publish(up_topic(DEV), numerics(pid), qos=1 + pid % 2, packet_id=pid))
            got, comps = [], []
            while len(got) < len(pids) or len(comps) < 25:
                p = await c.recv()
                if isinstance(p, PubComp):  # may overtake later PUBACK/PUBRECs
                    assert p.reason_code == 0
                    comps.append(p.packet_id)
                    continue
                assert isinstance(p, PubAck if p.packet_id % 2 == 0 else PubRec)
                assert sink.lsn_of[numerics(p.packet_id)] in sink.durable_done
                got.append(p.packet_id)
                if isinstance(p, PubRec):
                    c.send(PubRel(p.packet_id))
            assert got == pids and sorted(comps) == pids[1::2]
            assert store.stats()["frames"] == 53
            assert len(sink.commits) < 53  # coalesced: fewer commits than messages
            c.close()
        store.close()

    run(main())


def test_qos2_retransmission_stored_once(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "d1", clean=False,
                                           props=Properties(session_expiry_interval=60))
            c.send(Publish(up_topic(DEV), numerics(1), qos=2, packet_id=7))
            assert isinstance(await c.recv(), PubRec)
            c.abort()  # PUBREL never sent; the client resends the PUBLISH after reconnecting
            await wait_for(lambda: srv.stats().get("connections_closed", 0) == 1)
            c, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, "d1", clean=False)
            assert ack.session_present
            c.send(Publish(up_topic(DEV), numerics(1), qos=2, packet_id=7, dup=True))
            p = await c.recv()
            assert isinstance(p, PubRec) and p.packet_id == 7
            c.send(PubRel(7))
            assert isinstance(await c.recv(), PubComp)
            assert srv.stats()["duplicate_qos2"] == 1
            assert srv.store.stats()["frames"] == 1
            c.close()

    run(main())


def test_json_uplink_and_foreign_frames(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            doc = {"type": "numerics", "device": DEV, "seq": 1, "ts_us": 1_764_115_200_000_000,
                   "values": [{"code": "hr", "value": 70}]}
            c.send(Publish(up_json_topic(DEV), json.dumps(doc).encode(), qos=1, packet_id=1))
            assert (await c.recv()).reason_code == 0
            # a frame claiming another device id is rejected by the store, not stored
            c.send(Publish(up_topic(DEV), numerics(2, device=DEV2), qos=1, packet_id=2))
            c.send(Publish(up_json_topic(DEV), b"{not json", qos=1, packet_id=3))
            assert [(await c.recv()).packet_id for _ in range(2)] == [2, 3]
            st = srv.stats()
            assert st["uplink_messages"] == 3 and st["uplink_frames"] == 1
            assert st["uplink_messages_without_frames"] == 2
            assert srv.store.stats()["frames"] == 1
            c.close()

    run(main())


def test_backpressure_pauses_and_retries_without_loss(run, tmp_path):
    async def main():
        store = make_store(tmp_path / "s")
        sink = RecordingSink(store, refuse_feeds=5)
        async with serving(tmp_path, store=sink) as srv:
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            for pid in range(1, 21):
                c.send(Publish(up_topic(DEV), numerics(pid), qos=1, packet_id=pid))
            acks = [await c.recv() for _ in range(20)]
            assert [a.packet_id for a in acks] == list(range(1, 21))
            assert srv.stats()["backpressure_pauses"] == 1
            assert store.stats()["frames"] == 20
            c.close()
        store.close()

    run(main())


def test_integrator_receives_uplinks_after_durable(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            got = asyncio.Queue()
            sub = gmqtt.Client("integrator-1")
            sub.set_auth_credentials("integrator", "integrator-pw")
            sub.on_message = lambda c, topic, payload, qos, props: got.put_nowait((topic, payload))
            await sub.connect("127.0.0.1", srv.port, version=MQTTv50)
            sub.subscribe("vc/v1/dev/+/up", qos=1)
            await wait_for(lambda: len(srv.broker.tree) == 1)
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4)
            c.send(Publish(up_topic(DEV), numerics(5), qos=1, packet_id=1))
            topic, payload = await asyncio.wait_for(got.get(), 5)
            assert topic == up_topic(DEV) and payload == numerics(5)
            assert srv.store.wal.durable_lsn >= 1
            c.close()
            await sub.disconnect()

    run(main())
