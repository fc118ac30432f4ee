"""ACL enforcement, routing, retained messages, wills, sessions, shared subscriptions."""

from __future__ import annotations

import asyncio
import threading

import paho.mqtt.client as paho
import pytest
from helpers import (
    DEV,
    DEV2,
    DEV2_NAME,
    DEV_NAME,
    SECRET,
    SECRET2,
    RawClient,
    command,
    numerics,
    serving,
    subscribe,
    wait_for,
)

from vitalcore import codec
from vitalcore.mqtt import (
    Disconnect,
    Properties,
    PubAck,
    Publish,
    PubRec,
    UnsubAck,
    Unsubscribe,
    Will,
)
from vitalcore.server import cmd_topic, up_topic


def test_paho_v5_acl_reason_codes(run, tmp_path):
    """paho (MQTT 5): a device publishing to another device's topic gets PUBACK 0x87,
    subscribing outside its cmd topic gets SUBACK 0x87; its own topics work."""

    async def main():
        async with serving(tmp_path) as srv:
            loop = asyncio.get_running_loop()
            events: dict[str, object] = {}
            done = {k: threading.Event() for k in ("conn", "pub_bad", "pub_ok", "sub")}
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-dev",
                            protocol=paho.MQTTv5)
            c.username_pw_set(DEV_NAME, SECRET)
            c.on_connect = lambda cl, u, f, rc, p: (events.update(conn=rc), done["conn"].set())
            mids = {}

            def on_publish(cl, u, mid, rc, props):
                key = mids[mid]
                events[key] = rc
                done[key].set()

            c.on_publish = on_publish
            c.on_subscribe = lambda cl, u, mid, rcs, p: (events.update(sub=rcs), done["sub"].set())
            c.connect("127.0.0.1", srv.port)
            c.loop_start()
            try:
                await loop.run_in_executor(None, done["conn"].wait, 5)
                assert events["conn"] == 0
                mids[c.publish(up_topic(DEV2), numerics(1, DEV2), qos=1).mid] = "pub_bad"
                mids[c.publish(up_topic(DEV), numerics(1), qos=1).mid] = "pub_ok"
                c.subscribe([(cmd_topic(DEV2), 1), (cmd_topic(DEV), 1)])
                for k in ("pub_bad", "pub_ok", "sub"):
                    assert await loop.run_in_executor(None, done[k].wait, 5), k
                assert events["pub_bad"] == 0x87 and events["pub_ok"] == 0
                assert [int(rc.value) for rc in events["sub"]] == [0x87, 1]
            finally:
                c.disconnect()
                c.loop_stop()
            st = srv.stats()
            assert st["acl_denied_publish"] == 1 and st["acl_denied_subscribe"] == 1
            assert srv.store.stats()["frames"] == 1  # the forged uplink was not stored

    run(main())


def test_v311_acl_suback_0x80_and_silent_drop(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            c, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4)
            assert ack.reason_code == 0
            assert await subscribe(c, "vc/v1/dev/+/cmd", "#", cmd_topic(DEV)) == [0x80, 0x80, 1]
            c.send(Publish(up_topic(DEV2), numerics(1, DEV2), qos=1, packet_id=5))
            p = await c.recv()  # 3.1.1 has no negative PUBACK: positive ack, message dropped
            assert isinstance(p, PubAck) and p.packet_id == 5
            c.send(Publish(cmd_topic(DEV), b"x", qos=2, packet_id=6))
            assert isinstance(await c.recv(), PubRec)
            assert srv.stats()["acl_denied_publish"] == 2
            assert srv.stats()["acl_denied_subscribe"] == 2
            assert srv.store.stats()["frames"] == 0
            c.close()

    run(main())


def test_commands_routed_to_device_and_scoped_users(run, tmp_path):
    """An operator publishes a COMMAND; the device receives it on its cmd topic; a viewer
    may not publish; the integrator's grant does not reach cmd topics."""

    async def main():
        async with serving(tmp_path) as srv:
            dev, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            assert await subscribe(dev, cmd_topic(DEV), qos=2) == [2]
            op, _ = await RawClient.connect(srv.port, "operator", "operator-pw", 5)
            viewer, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 4)
            assert await subscribe(viewer, f"vc/v1/dev/{DEV_NAME}/#", up_topic(DEV2)) == [1, 0x80]
            op.send(Publish(cmd_topic(DEV), command(1), qos=1, packet_id=1))
            assert (await op.recv()).reason_code == 0
            p = await dev.recv()
            assert isinstance(p, Publish) and p.payload == command(1) and p.qos == 1
            dev.send(PubAck(p.packet_id))
            v = await viewer.recv()
            assert v.topic == cmd_topic(DEV) and v.payload == command(1)
            viewer.send(PubAck(v.packet_id))
            viewer.send(Publish(cmd_topic(DEV), command(2), qos=0))
            op.send(Publish(cmd_topic(0x99), command(3, 0x99), qos=1, packet_id=2))
            assert (await op.recv()).reason_code == 0x87
            await wait_for(lambda: srv.stats()["acl_denied_publish"] == 2)
            # server-side publish (the command API of later issues) reaches the device too
            srv.broker.publish(cmd_topic(DEV), command(4), qos=0)
            assert (await dev.recv()).payload == command(4)
            for c in (dev, op, viewer):
                c.close()

    run(main())


def test_retained_set_deliver_clear(run, tmp_path):
    """Retained messages (set by the server: users may not retain commands, which would be
    replay at every reconnect, docs/security.md) are delivered on SUBSCRIBE with the
    flag, forwarded live without it, and cleared by an empty payload."""

    async def main():
        async with serving(tmp_path) as srv:
            op, _ = await RawClient.connect(srv.port, "operator", "operator-pw", 5)
            op.send(Publish(cmd_topic(DEV), command(1), qos=1, retain=True, packet_id=1))
            assert (await op.recv()).reason_code == 0x87
            assert cmd_topic(DEV) not in srv.broker.retained
            assert srv.stats()["retain_refused_cmd"] == 1
            srv.broker.publish(cmd_topic(DEV), command(1), qos=1, retain=True)
            dev, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4)
            await subscribe(dev, cmd_topic(DEV))
            p = await dev.recv()
            assert p.retain and p.payload == command(1)
            dev.send(PubAck(p.packet_id))
            # a live message is forwarded without the retain flag
            srv.broker.publish(cmd_topic(DEV), command(2), qos=0, retain=True)
            p = await dev.recv()
            assert not p.retain and p.payload == command(2)
            assert srv.broker.retained[cmd_topic(DEV)].payload == command(2)
            srv.broker.publish(cmd_topic(DEV), b"", qos=0, retain=True)  # clears it
            assert (await dev.recv()).payload == b""
            assert cmd_topic(DEV) not in srv.broker.retained
            dev2, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5)
            await subscribe(dev2, cmd_topic(DEV))
            dev2.send(Publish(up_topic(DEV), b"x", qos=1, packet_id=9))  # not allowed anyway
            p = await dev2.recv()
            assert isinstance(p, PubAck) and p.reason_code == 0x87  # no retained message came
            for c in (op, dev, dev2):
                c.close()

    run(main())


def test_will_on_abrupt_close_not_on_disconnect(run, tmp_path):
    """A device's Will (a STATUS frame on its own up topic) is stored and forwarded when the
    connection dies, and not after a normal DISCONNECT."""

    async def main():
        async with serving(tmp_path) as srv:
            integ, _ = await RawClient.connect(srv.port, "integrator", "integrator-pw", 5)
            await subscribe(integ, "vc/v1/dev/+/up")
            will_frame = codec.encode_status(DEV, 99, 1_764_115_200_000_000, battery=5)
            will = Will(up_topic(DEV), will_frame, qos=1)
            d, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "w1", will=will)
            assert ack.reason_code == 0
            d.send(Disconnect(0))
            await d.closed_by_server()
            d, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, "w1", will=will)
            d.abort()
            p = await integ.recv()
            assert p.topic == up_topic(DEV) and p.payload == will_frame
            assert srv.stats()["wills_published"] == 1
            await wait_for(lambda: srv.store.stats()["frames"] == 1)
            # a device may not set a Will on someone else's topic
            bad = Will(up_topic(DEV2), will_frame)
            _, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "w2", will=bad)
            assert ack.reason_code == 0x87
            _, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, "w2", will=bad)
            assert ack.reason_code == 5
            integ.close()

    run(main())


def test_v5_will_delay_cancelled_by_resume(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            watcher, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5)
            await subscribe(watcher, "vc/v1/dev/00000000000012ab/#")
            frame = codec.encode_status(DEV, 1, 1_764_115_200_000_000, battery=1)
            will = Will(up_topic(DEV), frame, properties=Properties(will_delay_interval=1))
            props = Properties(session_expiry_interval=30)
            d, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "wd", clean=False,
                                           will=will, props=props)
            d.abort()
            await asyncio.sleep(0.3)
            d, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "wd", clean=False,
                                             props=props)
            assert ack.session_present
            await asyncio.sleep(1.0)
            assert srv.stats().get("wills_published", 0) == 0
            d.abort()  # this connection has no will
            d, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "wd2", clean=False,
                                           will=will, props=props)
            d.abort()
            p = await watcher.recv(3)  # published after the 1 s delay
            assert p.payload == frame
            watcher.close()

    run(main())


def test_persistent_session_queues_while_offline(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            props = Properties(session_expiry_interval=60)
            d, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "p1", clean=False,
                                           props=props)
            await subscribe(d, cmd_topic(DEV), qos=1)
            d.send(Disconnect(0))
            await d.closed_by_server()
            for i in range(5):
                srv.broker.publish(cmd_topic(DEV), command(i), qos=1)
            srv.broker.publish(cmd_topic(DEV), command(9), qos=0)
            d, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "p1", clean=False,
                                             props=props)
            assert ack.session_present
            got = [await d.recv() for _ in range(6)]
            assert [p.payload for p in got] == [command(i) for i in (0, 1, 2, 3, 4, 9)]
            # unacknowledged QoS 1 is resent with DUP after a reconnect (3.1.1 this time)
            d.abort()
            d, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, "p1", clean=False)
            assert ack.session_present
            again = [await d.recv() for _ in range(5)]
            assert all(p.dup for p in again) and [p.payload for p in again] == [
                command(i) for i in range(5)]
            for p in again:
                d.send(PubAck(p.packet_id))
            await wait_for(lambda: not srv.broker.sessions[(DEV_NAME, "p1")].inflight)
            # clean start discards the session
            d.close()
            await wait_for(lambda: srv.broker.sessions[(DEV_NAME, "p1")].client is None)
            d, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "p1", clean=True)
            assert not ack.session_present
            assert srv.broker.tree.filters(srv.broker.sessions[(DEV_NAME, "p1")]) == {}
            d.close()

    run(main())


def test_takeover_disconnects_first_connection(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            a, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "same")
            b, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "same")
            assert [p.reason_code for p in await a.closed_by_server()] == [0x8E]
            b.send(Publish(up_topic(DEV), numerics(1), qos=1, packet_id=1))
            assert isinstance(await b.recv(), PubAck)
            # another principal with the same client id has its own session: no takeover
            c, ack = await RawClient.connect(srv.port, DEV2_NAME, SECRET2, 5, "same")
            assert ack.reason_code == 0
            b.send(Publish(up_topic(DEV), numerics(2), qos=1, packet_id=2))
            assert isinstance(await b.recv(), PubAck)
            assert srv.stats()["takeovers"] == 1
            b.close()
            c.close()

    run(main())


def test_shared_subscription_splits_round_robin(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            members = []
            for _ in range(2):
                m, _ = await RawClient.connect(srv.port, "integrator", "integrator-pw", 5)
                assert await subscribe(m, "$share/fwd/vc/v1/dev/+/up", qos=0) == [0]
                members.append(m)
            solo, _ = await RawClient.connect(srv.port, "integrator", "integrator-pw", 5)
            await subscribe(solo, "vc/v1/dev/+/up", qos=0)
            d, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            for seq in range(10):
                d.send(Publish(up_topic(DEV), numerics(seq), qos=1, packet_id=seq + 1))
            for _ in range(10):
                await d.recv()
            got_solo = [(await solo.recv()).payload for _ in range(10)]
            got = [[(await m.recv()).payload for _ in range(5)] for m in members]
            assert got_solo == [numerics(s) for s in range(10)]
            assert sorted(got[0] + got[1]) == sorted(got_solo)
            assert set(got[0]).isdisjoint(got[1])
            u = members[0]
            u.send(Unsubscribe(7, ["$share/fwd/vc/v1/dev/+/up", "not/subscribed"]))
            ack = await u.recv()
            assert isinstance(ack, UnsubAck) and ack.reason_codes == [0, 0x11]
            for c in (*members, solo, d):
                c.close()

    run(main())


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_mosquitto_clients_auth_and_subscribe(run, tmp_path, version):
    async def main():
        async with serving(tmp_path) as srv:
            port = str(srv.port)
            sub = await asyncio.create_subprocess_exec(
                "mosquitto_sub", "-p", port, "-V", version, "-u", "integrator", "-P",
                "integrator-pw", "-t", "vc/v1/dev/+/up", "-C", "1", "-q", "1", "-W", "10",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await wait_for(lambda: len(srv.broker.tree) == 1)
            frame = tmp_path / "frame.bin"
            frame.write_bytes(numerics(1))
            pub = await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-p", port, "-V", version, "-u", DEV_NAME, "-P", SECRET,
                "-t", up_topic(DEV), "-f", str(frame), "-q", "2")
            assert await pub.wait() == 0
            out, _ = await sub.communicate()
            assert sub.returncode == 0 and out.rstrip(b"\n") == numerics(1)
            bad = await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-p", port, "-V", version, "-u", DEV_NAME, "-P", "nope",
                "-t", up_topic(DEV), "-m", "x", stderr=asyncio.subprocess.PIPE)
            _, err = await bad.communicate()
            assert bad.returncode != 0 and b"bad user name or password" in err.lower()
            assert srv.stats()["auth_failures"] == 1
            assert srv.store.stats()["frames"] == 1

    run(main())


def test_presence_listeners_see_devices_come_and_go(tmp_path, run):
    """Device connections (not users') reach presence listeners; a raising one is counted."""
    seen = []

    def boom(dev, online):
        raise RuntimeError("listener bug")

    async def main():
        async with serving(tmp_path) as srv:
            srv.broker.add_presence_listener(lambda dev, online: seen.append((dev, online)))
            srv.broker.add_presence_listener(boom)
            user, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5)
            dev, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, client_id="a")
            await wait_for(lambda: seen == [(DEV, True)])
            dev.abort()  # a lost link, not a DISCONNECT
            await wait_for(lambda: seen == [(DEV, True), (DEV, False)])
            dev2, _ = await RawClient.connect(srv.port, DEV2_NAME, SECRET2, 4)
            await wait_for(lambda: seen[-1] == (DEV2, True))
            dev2.send_raw(b"\xe0\x00")  # DISCONNECT
            await wait_for(lambda: seen[-1] == (DEV2, False))
            user.close()
            return srv.broker.stats()

    stats = run(main())
    assert seen == [(DEV, True), (DEV, False), (DEV2, True), (DEV2, False)]
    assert stats["presence_listener_errors"] == 4
