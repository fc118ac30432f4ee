"""``python -m vitalcore serve --clinical``: clinical logins on MQTT, alarm events on the
topic of the device's ward, and a ward grant covering exactly that ward's alarm topics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import msgspec
import paho.mqtt.client as paho
import pytest
from clinical_world import DEVICES, LOG2_N, MIN, T0, build_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import codec
from vitalcore.clinical import ClinicalAccounts, open_store
from vitalcore.mqtt.topics import topic_filter_error
from vitalcore.protocol import NumericCode
from vitalcore.server import Accounts, may_subscribe
from vitalcore.server.topics import device_name, filter_covers, up_topic
from vitalcore.storage import Store

D1, D2, D3 = DEVICES[:3]


@pytest.fixture
def world(store):
    build_world(store)
    store.admit("bedmgr", "P1", "W1", devices=[D1], at_us=T0 + MIN)
    store.admit("bedmgr", "P2", "W2", devices=[D2], at_us=T0 + MIN)
    return store


def test_a_ward_grant_covers_that_wards_alarm_topics_only(world):
    acc = ClinicalAccounts(world, log2_n=LOG2_N)
    nurse1 = acc.check("nurse1", "nurse1-pw")
    central = acc.check("central", "central-pw")  # central monitoring of hospital H1
    vendor = acc.check("vendor", "vendor-pw")  # device group, no patient data
    for flt in ("vc/v1/alarms/W1/#", "vc/v1/alarms/W1/+/event", "$share/desk/vc/v1/alarms/W1/#",
                f"vc/v1/alarms/W1/{device_name(D1)}/event"):
        assert may_subscribe(nurse1, flt), flt
    for flt in ("vc/v1/alarms/W2/#", "vc/v1/alarms/+/#", "vc/v1/alarms/#", "vc/v1/alarms/+/+/event",
                "vc/v1/alarms/_unassigned/#", "vc/v1/alarms/_system/#", "vc/v1/alarms/W9/#",
                "vc/v1/alarms/w1/#", "vc/v1/alarms/"):
        assert not may_subscribe(nurse1, flt), flt
    assert may_subscribe(central, "vc/v1/alarms/W2/#")
    assert not may_subscribe(central, "vc/v1/alarms/W3/#")  # hospital H2
    assert not may_subscribe(vendor, "vc/v1/alarms/W1/#")
    plain = Accounts(log2_n=LOG2_N)  # a file account without a dynamic scope: grants only
    plain.add_user("desk", "pw", grants=["vc/v1/alarms/W2/#"])
    desk = plain.check("desk", "pw")
    assert may_subscribe(desk, "vc/v1/alarms/W2/#") and not may_subscribe(desk,
                                                                         "vc/v1/alarms/W1/#")
    decisions = [e for e in world.audit_log("root", T0, 2**62) if e.action == "mqtt_alarms"]
    # every decision is audited; the unknown ward W9 is an error, not a denial
    assert {e.outcome for e in decisions} == {"allowed", "denied", "error"}


_LEVEL = st.one_of(st.sampled_from(["W1", "W2", "W3", "+", "#", "_unassigned", "", "w1"]),
                   st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=6))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_LEVEL, min_size=1, max_size=4))
def test_no_alarm_filter_outside_the_nurses_ward_is_granted(world, levels):
    nurse1 = ClinicalAccounts(world, log2_n=LOG2_N).check("nurse1", "nurse1-pw")
    flt = "vc/v1/alarms/" + "/".join(levels)
    inside = topic_filter_error(flt) is None and filter_covers("vc/v1/alarms/W1/#", flt)
    assert may_subscribe(nurse1, flt) == inside
    if inside:
        assert levels[0] == "W1" and "#" not in levels[:-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(name: str, user: str, password: str, port: int, got: dict) -> paho.Client:
    events = {k: threading.Event() for k in ("conn", "sub")}
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv5)
    c.username_pw_set(user, password)
    c.on_connect = lambda cl, u, f, rc, p: (got.update(conn=int(rc.value)), events["conn"].set())
    c.on_subscribe = lambda cl, u, mid, rcs, p: (got.update(sub=[int(r.value) for r in rcs]),
                                                 events["sub"].set())
    c.on_message = lambda cl, u, msg: got.setdefault("msgs", []).append(
        (msg.topic, msg.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert events["conn"].wait(10), f"{name}: no CONNACK"
    got["events"] = events
    return c


def test_serve_clinical_logs_devices_in_and_routes_alarms_by_ward(tmp_path):
    """A device of the clinical store logs in with its secret, its frames are stored, and
    its HR 250 bpm alarm reaches the nurse subscribed to its ward's alarm topics; an
    ``--accounts`` file given too adds its accounts (the central desk here)."""
    target = str(tmp_path / "clinical.sqlite")
    with open_store(target, log2_n=LOG2_N) as clinical:
        build_world(clinical)
        clinical.admit("bedmgr", "P1", "W1", devices=[D1], at_us=T0 + MIN)
    accounts = Accounts(log2_n=LOG2_N)
    accounts.add_user("desk", "desk-pw", grants=["vc/v1/alarms/+/+/event"])
    accounts.save(tmp_path / "accounts.json")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalcore", "serve", "--clinical", target,
         "--accounts", str(tmp_path / "accounts.json"),
         "--data", str(tmp_path / "data"), "--port", str(port), "--sync", "none"],
        env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    started = threading.Event()

    def drain() -> None:  # keep reading: a full pipe would block the server's logging
        for line in proc.stderr:
            lines.append(line)
            if "MQTT server listening" in line:
                started.set()

    threading.Thread(target=drain, daemon=True).start()
    clients = []
    try:
        assert started.wait(30), "server did not start:\n" + "".join(lines)
        nurse: dict = {}
        clients.append(_client("ward-W1", "nurse1", "nurse1-pw", port, nurse))
        assert nurse["conn"] == 0
        clients[0].subscribe([("vc/v1/alarms/W1/#", 1), ("vc/v1/alarms/W2/#", 1)])
        assert nurse["events"]["sub"].wait(10)
        assert nurse["sub"] == [1, 0x87]  # her ward's alarms; another ward's refused

        desk: dict = {}
        clients.append(_client("desk", "desk", "desk-pw", port, desk))
        clients[-1].subscribe("vc/v1/alarms/+/+/event", qos=1)
        assert desk["events"]["sub"].wait(10) and desk["sub"] == [1]

        wrong: dict = {}
        bad = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bad",
                          protocol=paho.MQTTv5)
        bad.username_pw_set(device_name(D1), "not-the-secret")
        bad.on_connect = lambda cl, u, f, rc, p: wrong.update(rc=int(rc.value))
        bad.connect("127.0.0.1", port)
        bad.loop_start()
        clients.append(bad)

        dev: dict = {}
        clients.append(_client("dev", device_name(D1), f"dev-{D1:x}", port, dev))
        assert dev["conn"] == 0
        now = time.time_ns() // 1000
        for i in range(9):  # 8 s of HR 250 bpm (hr.high: limit 120, onset delay 5 s)
            frame = codec.encode_numerics(D1, i, now - 8_000_000 + i * 1_000_000,
                                          [(NumericCode.HR, 250.0)])
            clients[-1].publish(up_topic(D1), frame, qos=1).wait_for_publish(10)
            time.sleep(0.05)
        deadline = time.monotonic() + 20
        while not (nurse.get("msgs") and desk.get("msgs")):
            assert time.monotonic() < deadline, "no alarm event:\n" + "".join(lines)
            time.sleep(0.05)
        assert wrong.get("rc") not in (None, 0)  # a wrong secret is refused
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, "".join(lines)
    topic, payload = nurse["msgs"][0]
    assert topic == f"vc/v1/alarms/W1/{device_name(D1)}/event"
    assert desk["msgs"][0] == (topic, payload)
    body = msgspec.json.decode(payload)
    assert (body["kind"], body["code"], body["value"]) == ("raised", "hr.high", 250.0)
    with Store(tmp_path / "data", flush_interval_s=0) as store:
        assert store.read_numerics(D1, 0, 2**62).num_rows == 9
