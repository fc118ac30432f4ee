"""The topic ACL, table-driven, over a real ``serve --clinical`` with real paho clients.

Every clinical role (and a device, and two accounts-file users) against every kind of
topic: publishing uplinks and commands of a device in scope ("own") and out of it
("other"), subscribing to live data, to command topics, to every device's uplinks, to the
alarms of the user's ward and another, to all alarms, ``$SYS`` and ``#``. The expected
answers are those of docs/protocol.md §12.1, docs/server.md "ACL" and docs/clinical.md
("One identity on MQTT, CoAP and the APIs"): "own" is device 0x1001, bound to a patient
in ward W1 (hospital H1); "other" is 0x1005, bound to a patient in W3 (hospital H2).
"""

from __future__ import annotations

import time

import pytest
from clinical_world import LOG2_N, ROOT, T0, build_world
from security_helpers import Mqtt, free_port, serving

from vitalcore import codec
from vitalcore.clinical import Resource, Role, open_store
from vitalcore.server import Accounts, cmd_topic, device_name, up_topic

OWN, OTHER = 0x1001, 0x1005
HOUR_US = 3_600_000_000

#: operation -> (action, topic or filter)
OPS = {
    "pub up own": ("pub", up_topic(OWN)),
    "pub up other": ("pub", up_topic(OTHER)),
    "pub cmd own": ("pub", cmd_topic(OWN)),
    "pub cmd other": ("pub", cmd_topic(OTHER)),
    "sub up own": ("sub", up_topic(OWN)),
    "sub up other": ("sub", up_topic(OTHER)),
    "sub cmd own": ("sub", cmd_topic(OWN)),
    "sub cmd other": ("sub", cmd_topic(OTHER)),
    "sub dev/+/up": ("sub", "vc/v1/dev/+/up"),
    "sub dev/#": ("sub", "vc/v1/dev/#"),
    "sub alarms own ward": ("sub", "vc/v1/alarms/W1/+/event"),
    "sub alarms other ward": ("sub", "vc/v1/alarms/W3/+/event"),
    "sub alarms +": ("sub", "vc/v1/alarms/+/+/event"),
    "sub alarms _unassigned": ("sub", "vc/v1/alarms/_unassigned/#"),
    "sub $SYS/#": ("sub", "$SYS/#"),
    "sub #": ("sub", "#"),
}

#: principal -> the operations it may do (everything else must be refused)
ALLOWED = {
    "device 0x1001": {"pub up own", "sub cmd own"},
    "ward_nurse W1": {"pub cmd own", "sub up own", "sub cmd own", "sub alarms own ward"},
    "ward_doctor W1": {"pub cmd own", "sub up own", "sub cmd own", "sub alarms own ward"},
    "central_monitoring H1": {"pub cmd own", "sub up own", "sub cmd own",
                              "sub alarms own ward"},
    "biomedical_engineer global": {"pub cmd own", "pub cmd other"},
    "administrator H1": set(),
    "service_vendor group": set(),
    "remote_viewer patient": {"sub up own", "sub cmd own"},
    "remote_viewer expired": set(),
    "file viewer +/up grant": {"sub up own", "sub up other", "sub dev/+/up"},
    "file admin": {"pub cmd own", "pub cmd other", "sub up own", "sub up other",
                   "sub cmd own", "sub cmd other", "sub dev/+/up", "sub dev/#"},
}

#: principal -> (user name, password)
LOGINS = {
    "device 0x1001": (device_name(OWN), f"dev-{OWN:x}"),
    "ward_nurse W1": ("nurse1", "nurse1-pw"),
    "ward_doctor W1": ("doctor1", "doctor1-pw"),
    "central_monitoring H1": ("central", "central-pw"),
    "biomedical_engineer global": ("biomed", "biomed-pw"),
    "administrator H1": ("admin1", "admin1-pw"),
    "service_vendor group": ("vendor", "vendor-pw"),
    "remote_viewer patient": ("remote", "remote-pw"),
    "remote_viewer expired": ("remote-old", "remote-old-pw"),
    "file viewer +/up grant": ("integrator", "integrator-pw"),
    "file admin": ("fileadmin", "fileadmin-pw"),
}


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """serve --accounts --clinical: the standard clinical world, two patients, two remote
    viewers (one grant current, one expired), an integrator and an admin in the file."""
    tmp = tmp_path_factory.mktemp("acl")
    clinical = str(tmp / "clinical.sqlite")
    cs = open_store(clinical, log2_n=LOG2_N)
    build_world(cs)
    cs.admit("nurse1", "P-OWN", "W1", "W1-B1", devices=[OWN], at_us=T0 + 10)
    cs.admit("nurse3", "P-OTHER", "W3", "W3-B1", devices=[OTHER], at_us=T0 + 10)
    now = time.time_ns() // 1000
    for user, window in (("remote", (now - HOUR_US, now + 24 * HOUR_US)),
                         ("remote-old", (now - 3 * HOUR_US, now - 2 * HOUR_US))):
        cs.create_user(ROOT, user, f"{user}-pw", at_us=now - 4 * HOUR_US)
        cs.grant_role(ROOT, user, Role.REMOTE_VIEWER, Resource.patient("P-OWN"), *window,
                      at_us=now - 4 * HOUR_US)
    cs.close()
    acc = Accounts(log2_n=LOG2_N)
    acc.add_user("integrator", "integrator-pw", "viewer", grants=["vc/v1/dev/+/up"])
    acc.add_user("fileadmin", "fileadmin-pw", "admin")
    acc.save(tmp / "accounts.json")
    port = free_port()
    with serving(tmp, "--data", str(tmp / "data"), "--port", str(port), "--clinical",
                 clinical, "--accounts", str(tmp / "accounts.json")):
        yield port, clinical


def _payload(op: str) -> bytes:
    device = OWN if op.endswith("own") else OTHER
    if " cmd " in op:
        return codec.encode_command(device, 1, T0, 7, 1, 0)
    return codec.encode_numerics(device, 1, T0, [(1, 70.0)])


@pytest.mark.parametrize("principal", sorted(ALLOWED))
def test_acl_table(installation, principal):
    """Each principal: every operation of OPS answered as the table says (a refusal is
    reason 0x87, Not authorized, in the SUBACK or PUBACK; an allowed PUBLISH is
    acknowledged with a success code)."""
    port, _ = installation
    user, password = LOGINS[principal]
    got = {}
    with Mqtt(port, user, password, client_id=f"acl-{user}") as c:
        assert c.connect() == 0
        for op, (action, topic) in OPS.items():
            if action == "pub":
                rc = c.publish(topic, _payload(op))
            else:
                rc = c.subscribe(topic)
            assert rc < 0x80 or rc == 0x87, f"{op}: unexpected reason {rc:#x}"
            got[op] = rc < 0x80
    expected = {op: op in ALLOWED[principal] for op in OPS}
    wrong = {op: f"got {'allowed' if got[op] else 'denied'}" for op in OPS
             if got[op] != expected[op]}
    assert not wrong, f"{principal}: {wrong}"


def test_clinical_acl_decisions_are_audited(installation):
    """The clinical users' MQTT decisions above are in the audit trail, refusals too."""
    _, clinical = installation
    with Mqtt(installation[0], "nurse1", "nurse1-pw", client_id="acl-audit") as c:
        assert c.connect() == 0
        assert c.subscribe(up_topic(OTHER)) == 0x87
        assert c.subscribe(up_topic(OWN)) < 0x80
    cs = open_store(clinical, log2_n=LOG2_N)
    try:
        rows = cs.audit_log(ROOT, 0, 2**62, user="nurse1")
    finally:
        cs.close()
    subs = [(r.resource, r.outcome) for r in rows if r.action == "mqtt_subscribe"]
    assert (str(Resource.device(OTHER)), "denied") in subs
    assert (str(Resource.device(OWN)), "allowed") in subs


def test_wrong_password_and_unknown_user_refused(installation):
    port, _ = installation
    for user, pw in (("nurse1", "wrong"), ("nobody", "x"), (device_name(OWN), "nurse1-pw"),
                     ("nurse1", "")):
        with Mqtt(port, user, pw, client_id="acl-bad") as c:
            assert c.connect() in (0x86, 0x87), (user, pw)


def test_commands_are_never_retained(installation):
    """A command published with RETAIN must not be stored: a retained START_NIBP would be
    replayed to the device at each reconnect, long after the sender's scope ended. The
    PUBLISH is refused (MQTT 5 PUBACK 0x87; 0x9A Retain not supported is no PUBACK code)
    and nothing reaches a device subscribing afterwards."""
    port, _ = installation
    with Mqtt(port, "nurse1", "nurse1-pw", client_id="acl-retain") as nurse:
        assert nurse.connect() == 0
        nurse.client.publish(cmd_topic(OWN), _payload("pub cmd own"), qos=1, retain=True)
        kind, rc = nurse._next()
        assert kind == "puback" and rc == 0x87, (kind, hex(rc))
    with Mqtt(port, device_name(OWN), f"dev-{OWN:x}", client_id="acl-retain-dev") as dev:
        assert dev.connect() == 0
        assert dev.subscribe(cmd_topic(OWN)) < 0x80
        time.sleep(0.5)
        assert dev.messages.empty(), "a retained command was replayed to the device"
    will = Mqtt(port, "nurse1", "nurse1-pw", client_id="acl-retain-will")
    will.client.will_set(cmd_topic(OWN), _payload("pub cmd own"), qos=1, retain=True)
    with will:
        assert will.connect() == 0x9A  # a retained Will on a command topic: refused
