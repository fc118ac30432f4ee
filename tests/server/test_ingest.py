"""Uplink ingest: device PUBLISHes end in the store, acknowledged only once durable."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import time

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from helpers import (
    DEV,
    DEV2,
    DEV_NAME,
    SECRET,
    RawClient,
    accounts,
    make_store,
    numerics,
    serving,
    wait_for,
)

from vitalcore.errors import BackPressureError
from vitalcore.mqtt import Properties, PubAck, PubComp, Publish, PubRec, PubRel
from vitalcore.server import up_json_topic, up_topic
from vitalcore.server.ingest import (
    GC_ENV,
    GC_THRESHOLDS,
    CommitBatcher,
    GcStats,
    tune_gc,
)


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


def test_commit_backpressure_retries_without_loss_or_early_ack(run, tmp_path):
    """The WAL refuses the first commits (BackPressureError from Store.commit): the
    batcher retries, the store refuses feeds meanwhile (the connection stops reading),
    nothing is acknowledged before its retried commit is durable, nothing is lost and
    the connection stays open."""

    async def main():
        store = make_store(tmp_path / "s")
        real_append = store.wal.append
        refusals = [3]

        def append(data):
            if refusals[0]:
                refusals[0] -= 1
                raise BackPressureError("test: WAL queue full")
            return real_append(data)

        store.wal.append = append
        sink = RecordingSink(store)
        async with serving(tmp_path, store=sink) as srv:
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            for pid in range(1, 31):
                c.send(Publish(up_topic(DEV), numerics(pid), qos=1, packet_id=pid))
            acks = []
            for _ in range(30):
                p = await c.recv()
                assert isinstance(p, PubAck) and p.reason_code == 0, p
                assert sink.lsn_of[numerics(p.packet_id)] in sink.durable_done
                acks.append(p.packet_id)
            assert acks == list(range(1, 31))
            st = srv.stats()
            assert st["commit_backpressure_retries"] == 3
            assert st["connections"] == 1 and st.get("storage_errors", 0) == 0
            assert refusals == [0]
            assert store.stats()["frames"] == 30
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


class _FakeSink:
    """A sink whose durability the test controls: ``durable_lsn`` is moved by hand and
    ``durable()`` waits for it (so the batcher's own look at ``durable_lsn`` is what
    acknowledges, unless the test resolves the wait)."""

    def __init__(self, refuse_commits: int = 0) -> None:
        self.fed = 0
        self.committed = 0
        self.last_lsn = 0
        self.durable_lsn = 0
        self.refuse_commits = refuse_commits
        self.changed = asyncio.Event()

    def commit(self) -> int:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise BackPressureError("test: WAL queue full")
        if self.fed > self.committed:
            self.committed = self.fed
            self.last_lsn += 1
        return self.last_lsn

    def make_durable(self, lsn: int) -> None:
        self.durable_lsn = lsn
        self.changed.set()

    async def durable(self, lsn: int) -> None:
        while self.durable_lsn < lsn:
            self.changed.clear()
            await self.changed.wait()


def test_batcher_bounds_commits_and_settles_from_durable_lsn(run):
    """max_entries commits at once (one long loop iteration cannot grow one huge commit);
    entries are settled in commit order as soon as the sink's durable_lsn covers them,
    from add(), before the event loop delivers durable()'s result."""

    async def main():
        loop = asyncio.get_running_loop()
        sink = _FakeSink()
        done: list[list[int]] = []
        batcher = CommitBatcher(sink, loop, done.append, lambda e, x: pytest.fail(str(x)),
                                max_entries=4, interval_s=0.05)
        for i in range(10):
            sink.fed += 1
            batcher.add(i)
        assert sink.last_lsn == 2 and batcher.pending == 3  # 2 waiting + 1 scheduled
        assert done == []  # nothing durable yet: nothing acknowledged
        sink.durable_lsn = 1  # not signalled: only the batcher's own look can see it
        sink.fed += 1
        batcher.add(10)
        assert done == [[0, 1, 2, 3]]
        sink.make_durable(2)
        await asyncio.sleep(0.2)  # durable() of commit 2 returns; the timer commits 8..10
        assert sink.last_lsn == 3
        assert done[1] == [4, 5, 6, 7] and len(done) == 2  # commit 3 is not durable yet
        sink.make_durable(3)
        await batcher.drain(timeout_s=5)
        assert done[2] == [8, 9, 10] and batcher.pending == 0
        # a byte bound too: two entries of 3 MiB reach 4 MiB, committed at once
        batcher.max_entries = 100
        for i in (11, 12):
            sink.fed += 1
            batcher.add(i, 3 << 20)
        assert sink.last_lsn == 4 and batcher.pending == 1
        sink.make_durable(4)
        await batcher.drain(timeout_s=5)
        assert done[3] == [11, 12]

    run(main())


def test_batcher_drain_gives_up_on_lasting_backpressure(run):
    """A commit refused for longer than drain's timeout is abandoned unacknowledged."""

    async def main():
        loop = asyncio.get_running_loop()
        sink = _FakeSink(refuse_commits=10**6)
        done, failed = [], []
        batcher = CommitBatcher(sink, loop, done.append, lambda e, x: failed.append(e),
                                retry_s=0.01)
        sink.fed += 1
        batcher.add("a")
        t0 = time.monotonic()
        await batcher.drain(timeout_s=0.2)
        assert 0.15 < time.monotonic() - t0 < 2.0
        assert done == [] and failed == [] and batcher.pending == 0
        # ~20 retries on an idle machine; CPU starvation stretches the 10 ms sleeps
        assert batcher.backpressure_retries >= 2

    run(main())


def test_load_generator_traffic_is_stored_whole(run, tmp_path):
    """The batched generator (QoS 1, then QoS 0 with its PINGREQ barrier) against the
    server: every message acknowledged / taken in, every frame stored, none rejected;
    its packets are byte-identical to the one-device reference path."""
    from vitalcore import protocol as P
    from vitalcore.sim.load import SLOTS, TICK_US, _Device, _Fleet, run_load, tick_templates
    from vitalcore.sim.ward import provision_ward

    class Capture:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b) -> None:
            self.data += b

    async def main():
        ids = [0x5600_00AB + 977 * i for i in range(60)]
        ref = [_Device(d, "s", 10_000) for d in ids]
        fleet_devs = [_Device(d, "s", 10_000) for d in ids]
        for d in ref + fleet_devs:
            d.transport = Capture()
        t0 = P.TS_MIN_US + 10 * TICK_US
        templates = tick_templates()
        for _ in range(6):
            for d in ref:
                d.send_tick(templates, t0)
        fleet = _Fleet(fleet_devs, 1, 10_000, t0)
        for step in range(6 * SLOTS):
            fleet.send(step)
        assert all(bytes(a.transport.data) == bytes(b.transport.data)
                   for a, b in zip(ref, fleet_devs, strict=True))

        acc = accounts()
        creds = provision_ward(12, acc)
        first, second = dict(sorted(creds.items())[:6]), dict(sorted(creds.items())[6:])
        store = make_store(tmp_path / "s")
        async with serving(tmp_path, store=store, accounts=acc) as srv:
            r1 = await run_load(6, "127.0.0.1", srv.port, first, 1.0, qos=1, warmup_s=0.3)
            assert r1.connected == 6 and r1.skipped_ticks == 0
            assert r1.messages_acked == r1.messages_sent >= 6 * 4
            assert r1.latencies_ms.size == r1.messages_acked
            r0 = await run_load(6, "127.0.0.1", srv.port, second, 1.0, qos=0)
            assert r0.messages_acked == r0.messages_sent >= 6 * 4
            await srv.broker.batcher.drain()
            st, sst = srv.stats(), store.stats()
            assert st["uplink_messages"] == (r1.messages_sent + r1.warmup_messages
                                             + r0.messages_sent)
            assert sst["frames"] == st["uplink_frames"] and sst["duplicates"] == 0
            warm_frames = st["uplink_frames"] - r1.frames_sent - r0.frames_sent
            assert 3 * r1.warmup_messages <= warm_frames <= 4 * r1.warmup_messages
            assert r1.warmup_messages > 0
            assert not any(sst["decoder"]["rejected"].values())
        store.close()

    run(main())


def test_load_devices_keep_sending_until_the_start_so_their_clocks_stay_on_time(run, tmp_path):
    """Generator processes wait for each other between warm-up and start: their devices
    go on sending meanwhile, so device time stays on the wall clock (a 2 s pause made
    every device's clock 2 s slow) and the stream has no gap."""
    import numpy as np

    from vitalcore.sim.load import run_load
    from vitalcore.sim.ward import provision_ward

    async def main():
        acc = accounts()
        creds = provision_ward(4, acc)
        store = make_store(tmp_path / "s")
        ready_at: list[float] = []

        def start_at():  # "the other process" is ready 2 s after this one
            if not ready_at:
                ready_at.append(time.time())
            return ready_at[0] + 2.0 if time.time() >= ready_at[0] + 2.0 else None

        started: list[int] = []

        def on_phase(phase: str) -> None:
            if phase == "start":
                started.append(time.time_ns() // 1000)

        async with serving(tmp_path, store=store, accounts=acc) as srv:
            rep = await run_load(4, "127.0.0.1", srv.port, creds, 1.0, qos=1, warmup_s=0.3,
                                 start_at=start_at, on_phase=on_phase)
            end_us = time.time_ns() // 1000
            await srv.broker.batcher.drain()
        assert rep.messages_acked == rep.messages_sent >= 4 * 4
        assert rep.latencies_ms.size == rep.messages_acked  # warm-up messages not timed
        assert rep.warmup_messages >= 4 * 4 * 2  # warm-up and the 2 s wait: sent, acked
        newest = max(int(np.max(store.read_waveforms(d, 0, end_us + 10**6)["ts_us"]
                                .to_numpy())) for d in creds)
        # the last tick of the 1 s run began ~0.75 s after the start (device time); the
        # old pause would put it ~1.25 s before the start
        assert abs(newest - (started[0] + 750_000)) < 400_000
        assert store.stats()["gaps"] == 0 and store.stats()["duplicates"] == 0
        store.close()

    run(main())


def test_uplink_routed_once_a_subscriber_appears_and_not_after_it_left(run, tmp_path):
    """The per-connection 'anyone subscribed to my uplink?' answer follows SUBSCRIBE and
    UNSUBSCRIBE made while the device keeps publishing."""
    from helpers import subscribe

    from vitalcore.mqtt import Unsubscribe

    async def main():
        async with serving(tmp_path) as srv:
            dev, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            sub, _ = await RawClient.connect(srv.port, "integrator", "integrator-pw", 5)

            async def up(pid):
                dev.send(Publish(up_topic(DEV), numerics(pid), qos=1, packet_id=pid))
                assert (await dev.recv()).packet_id == pid

            await up(1)  # nobody subscribed
            assert await subscribe(sub, "vc/v1/dev/+/up", qos=0) == [0]
            await up(2)
            got = await sub.recv()
            assert isinstance(got, Publish) and got.payload == numerics(2)
            sub.send(Unsubscribe(7, ["vc/v1/dev/+/up"]))
            assert (await sub.recv()).packet_id == 7
            await up(3)
            assert srv.stats()["messages_out"] == 1
            dev.close()
            sub.close()

    run(main())


def test_tune_gc_is_idempotent_and_times_every_collection():
    stats = tune_gc()
    assert tune_gc() is stats and gc.callbacks.count(stats) == 1
    if os.environ.get(GC_ENV) != "default":
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
    before = stats.collections[2]
    gc.collect()
    assert stats.collections[2] == before + 1
    assert stats.as_dict()["gc2_collections"] == before + 1


def test_fd_limit_is_raised_in_a_child_and_never_lowered():
    """In a child process (the limit is process-wide): a soft limit below the hard one
    goes up; asking for less than the current soft limit changes nothing."""
    code = textwrap.dedent("""
        import resource
        from vitalcore.server.ingest import raise_fd_limit
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        got = raise_fd_limit(4096)
        assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= min(4096, hard), got
        assert raise_fd_limit(100) == got == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_gc_stats_count_long_pauses_per_generation():
    stats = GcStats()
    stats("start", {"generation": 1})
    time.sleep(0.06)
    stats("stop", {"generation": 1})
    stats("start", {"generation": 0})
    stats("stop", {"generation": 0})
    d = stats.as_dict()
    assert d["gc_pauses_over_50ms"] == 1 and d["gc1_collections"] == d["gc0_collections"] == 1
    assert 60 <= d["gc1_pause_max_ms"] < 1000 and d["gc0_pause_max_ms"] < 50
