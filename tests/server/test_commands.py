"""CommandCenter against a real Server and Store, with simulated wearables over gmqtt.

The ward's devices answer IDENTIFY with COMPLETED, START_NIBP with ACCEPTED (BUSY while
a measurement runs), STOP_NIBP with COMPLETED (the running START then FAILED, detail
255), any other kind with UNSUPPORTED. A raw MQTT client logged in as a device and
subscribed to its cmd topic plays a device that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from helpers import DEV, DEV_NAME, SECRET, TS, RawClient, accounts, make_store, subscribe, wait_for

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.errors import UsageError
from vitalcore.mqtt import ConnAck, Publish
from vitalcore.server import Server, cmd_topic
from vitalcore.server.commands import CommandCenter, CommandStatus
from vitalcore.sim.ward import Ward, provision_ward

S = CommandStatus
N = 3


@contextlib.asynccontextmanager
async def ward_server(tmp_path, n: int = N):
    """Server + Store + ``n`` connected wearables (plus one provisioned, never connected)."""
    logging.getLogger("gmqtt").setLevel(logging.ERROR)
    acc = accounts()
    creds = provision_ward(n + 1, acc)
    offline = max(creds)
    store = make_store(tmp_path / "store")
    server = Server(store, acc, port=0)
    await server.start()
    ward = Ward({d: s for d, s in creds.items() if d != offline}, "127.0.0.1", server.port,
                scenarios=False, stagger_s=0.2, nibp_deflate_mmhg_s=10.0)
    center = CommandCenter(server.broker, store, default_timeout_s=10.0, first_command_id=7)
    try:
        await ward.start()
        devs = [w.device_id for w in ward.wearables]
        await wait_for(lambda: all(server.broker.tree.match(cmd_topic(d)) for d in devs), 10.0)
        yield server, store, center, devs, offline
    finally:
        center.close()
        await ward.stop(drain_timeout_s=2.0)
        await server.stop()
        store.close()


def test_group_command_completes_per_device(tmp_path):
    async def scenario():
        async with ward_server(tmp_path) as (server, store, center, devs, offline):
            updates = []
            rnd = center.start(devs + [offline, devs[0]], P.CommandKind.IDENTIFY, 3,
                               on_update=lambda r: updates.append(rnd.progress()))
            assert rnd.progress() == (N + 1, 0, 1, 0)  # only the offline one is final
            results = await rnd.wait()
            assert [r.device_id for r in results] == devs + [offline]  # repeat dropped
            by_dev = {r.device_id: r for r in results}
            for d in devs:
                r = by_dev[d]
                assert (r.status, r.kind, r.arg, r.detail) == (S.COMPLETED, 5, 3, 0)
                assert r.sent_at <= r.finished_at and r.accepted_at == 0
            assert by_dev[offline].status is S.NOT_CONNECTED
            assert len({r.command_id for r in results}) == N + 1
            assert [u.done for u in updates] == list(range(2, N + 2))  # one per device
            assert rnd.progress() == (N + 1, 0, N + 1, N)
            # a second round: new command ids, the next sequence number per device
            again = await center.send(devs[:1], P.CommandKind.IDENTIFY)
            assert again[0].status is S.COMPLETED
            assert again[0].command_id not in {r.command_id for r in results}
            assert center._seq[devs[0]] == 2 and offline not in center._seq
            st = center.stats()
            assert (st["sent"], st["acks"], st["not_connected"], st["pending"]) == (N + 1, N + 1,
                                                                                   1, 0)
            stored = store.read_acks(devs[0], 0, 2**62).to_pydict()
            assert again[0].command_id in stored["command_id"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_unknown_kind_unsupported_and_nibp_progress(tmp_path):
    async def scenario():
        async with ward_server(tmp_path, n=2) as (server, store, center, devs, _):
            res = await center.send(devs, 0x7E, timeout_s=5.0)
            assert [r.status for r in res] == [S.UNSUPPORTED, S.UNSUPPORTED]
            assert all(r.kind == 0x7E for r in res)
            # START_NIBP is accepted (progress, not the end); a second one is BUSY; STOP
            # ends the first as FAILED with the device's reason code
            start = center.start(devs[:1], P.CommandKind.START_NIBP, timeout_s=20.0)
            await wait_for(lambda: start.progress().accepted == 1, 5.0)
            (r,) = start.results
            assert r.status is S.ACCEPTED and r.accepted_at >= r.sent_at and not start.done
            (busy,) = await center.send(devs[:1], P.CommandKind.START_NIBP, timeout_s=5.0)
            assert busy.status is S.BUSY
            (stop,) = await center.send(devs[:1], P.CommandKind.STOP_NIBP, timeout_s=5.0)
            assert stop.status is S.COMPLETED
            await asyncio.wait_for(start.wait(), 5.0)
            assert (r.status, r.detail) == (S.FAILED, 255)
            assert r.accepted_at <= r.finished_at

    asyncio.run(asyncio.wait_for(scenario(), 40))


def test_silent_device_times_out_and_close_cancels(tmp_path):
    async def scenario():
        async with ward_server(tmp_path, n=1) as (server, store, center, devs, _):
            c, ack = await RawClient.connect(server.port, DEV_NAME, SECRET, client_id="mute")
            assert isinstance(ack, ConnAck) and ack.reason_code == 0
            assert await subscribe(c, cmd_topic(DEV)) == [1]
            try:
                res = await center.send([DEV, devs[0]], P.CommandKind.IDENTIFY, timeout_s=0.8)
                assert [r.status for r in res] == [S.TIMEOUT, S.COMPLETED]
                assert res[0].note == "no answer in time" and res[0].finished_at > res[0].sent_at
                pub = await c.recv()  # the command did reach the silent device, at QoS 1
                assert isinstance(pub, Publish) and pub.qos == 1
                dec = codec.FrameDecoder().decode(pub.payload, DEV).tables["commands"]
                assert dec["command_id"].tolist() == [res[0].command_id]
                # an ACK after the timeout changes nothing and is counted as unmatched
                store.ingest(codec.encode_ack(DEV, 0, TS, res[0].command_id, 5, 1), DEV)
                assert res[0].status is S.TIMEOUT and center.stats()["unmatched_acks"] == 1
                pending = center.start([DEV], P.CommandKind.IDENTIFY, timeout_s=30.0)
                (p,) = pending.results
                store.ingest(codec.encode_ack(DEV, 1, TS, p.command_id, 1, 1), DEV)  # wrong kind
                assert p.status is S.PENDING and center.stats()["unmatched_acks"] == 2
                store.ingest(codec.encode_ack(DEV, 2, TS, p.command_id, 5, 0), DEV)
                assert p.status is S.ACCEPTED and pending.progress() == (1, 1, 0, 0)
                assert center.pending() == [p]
                center.close()
                assert [r.status for r in await pending.wait()] == [S.CANCELLED]
                assert p.note == "command center closed" and p.finished_at >= p.accepted_at
                with pytest.raises(UsageError):
                    center.start([DEV], P.CommandKind.IDENTIFY)
            finally:
                c.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_raising_listener_does_not_break_ingest(tmp_path):
    async def scenario():
        async with ward_server(tmp_path, n=2) as (server, store, center, devs, _):
            calls = []

            def broken(batch):
                calls.append(batch.n_frames)
                raise RuntimeError("dashboard bug")

            # listeners run in the order added: put the broken one before the center's
            store.remove_commit_listener(center._on_commit)
            store.add_commit_listener(broken)
            store.add_commit_listener(center._on_commit)
            frames0 = store.stats()["frames"]
            res = await center.send(devs, P.CommandKind.IDENTIFY, timeout_s=5.0)
            assert [r.status for r in res] == [S.COMPLETED, S.COMPLETED]
            await wait_for(lambda: store.stats()["frames"] > frames0 + 20, 5.0)
            assert store.stats()["listener_errors"] == len(calls) > 0
            assert server.stats().get("storage_errors", 0) == 0
            store.remove_commit_listener(broken)
            with pytest.raises(UsageError):
                store.remove_commit_listener(broken)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_bad_arguments_are_refused(tmp_path):
    async def scenario():
        store = make_store(tmp_path / "store")
        server = Server(store, accounts(), port=0)
        await server.start()
        try:
            with pytest.raises(UsageError):
                CommandCenter(server.broker, store, default_timeout_s=0)
            with pytest.raises(UsageError):
                CommandCenter(server.broker, store, first_command_id=0)
            center = CommandCenter(server.broker, store)
            for devices, kind, arg, timeout in (([], 5, 0, None), ([0], 5, 0, None),
                                                ([DEV], 256, 0, None), ([DEV], 5, -1, None),
                                                ([DEV], 5, 1 << 32, None), ([DEV], 5, 0, 0.0)):
                with pytest.raises(UsageError):
                    center.start(devices, kind, arg, timeout)
            assert center.stats() == {"pending": 0}  # nothing was sent
            center.close()
            center.close()
        finally:
            await server.stop()
            store.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
