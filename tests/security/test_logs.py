"""No patient data and no credentials in the logs, at DEBUG level.

``serve --clinical --coap-port --log-level DEBUG`` with the alarm engine, a patient with a
distinctive name and MRN, a device bound to them streaming over MQTT and CoAP, an HR
alarm delivered to the ward nurse, refused subscriptions, wrong passwords and a user
typing a password or an MRN into the user-name field. Everything the server logs
(its stderr, DEBUG and up, aiocoap's too) is searched for the distinctive strings.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiocoap
import pytest
from aiocoap import Code, Message
from clinical_world import LOG2_N, ROOT, T0, build_world
from security_helpers import Mqtt, free_port, serving

from vitalcore import codec
from vitalcore.clinical import open_store
from vitalcore.server import device_name, up_topic

DEV = 0x1001
MRN = "MRN-QX99173Z"
NAME = "Zebediah Quillfeather"
DEVICE_SECRET = "S3cr3t-Dv-zq81"
NURSE_PW = "Nurse-Pw-kx72"
SECRETS = (MRN, NAME, "Quillfeather", DEVICE_SECRET, NURSE_PW)


def _numerics(seq: int, hr: float) -> bytes:
    return codec.encode_numerics(DEV, seq, T0 + seq * 1_000_000, [(1, hr), (3, 97.0)])


async def _coap(port: int) -> list[Code]:
    ctx = await aiocoap.Context.create_client_context()
    try:
        out = []
        for seq, secret in ((500, DEVICE_SECRET), (501, "wrong-" + DEVICE_SECRET)):
            uri = f"coap://127.0.0.1:{port}/vc/v1/up?d={device_name(DEV)}&k={secret}"
            req = Message(code=Code.POST, uri=uri, payload=_numerics(seq, 80.0))
            out.append((await asyncio.wait_for(ctx.request(req).response, 20)).code)
        return out
    finally:
        await ctx.shutdown()


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    """The DEBUG log of a whole session of the installation (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("logs")
    clinical = str(tmp / "clinical.sqlite")
    cs = open_store(clinical, log2_n=LOG2_N)
    build_world(cs)
    cs.set_device_secret(ROOT, DEV, DEVICE_SECRET)
    cs.set_password(ROOT, "nurse1", NURSE_PW)
    cs.admit("nurse1", MRN, "W1", "W1-B1", devices=[DEV], display_name=NAME, at_us=T0 + 10)
    cs.close()
    port, coap = free_port(), free_port(socket.SOCK_DGRAM)
    alarm = None
    with serving(tmp, "--data", str(tmp / "data"), "--port", str(port), "--coap-port",
                 str(coap), "--clinical", clinical, "--log-level", "DEBUG",
                 ready="CoAP endpoint listening") as log:
        with Mqtt(port, "nurse1", NURSE_PW, client_id="nurse1-station") as nurse, \
                Mqtt(port, device_name(DEV), DEVICE_SECRET, client_id=device_name(DEV)) as dev:
            assert nurse.connect() == 0 and dev.connect() == 0
            assert nurse.subscribe(f"vc/v1/alarms/W1/{device_name(DEV)}/event") < 0x80
            assert nurse.subscribe(up_topic(DEV)) < 0x80
            assert nurse.subscribe("vc/v1/alarms/W3/+/event") == 0x87
            for seq in range(60):  # a minute of HR 190: an hr.high alarm
                assert dev.publish(up_topic(DEV), _numerics(seq, 190.0)) == 0
            deadline = time.monotonic() + 20
            while alarm is None and time.monotonic() < deadline:
                try:
                    msg = nurse.messages.get(timeout=1)
                except Exception:
                    continue
                if "/alarms/" in msg.topic:
                    alarm = msg
        assert asyncio.run(_coap(coap)) == [Code.CHANGED, Code.UNAUTHORIZED]
        for user, pw in (("nurse1", "not-" + NURSE_PW), ("nurse1", NAME)):
            with Mqtt(port, user, pw) as c:
                assert c.connect() == 0x86
        text = log.read_text()
    return text, alarm


def test_the_session_really_ran_at_debug(server_log):
    text, alarm = server_log
    assert " DEBUG " in text and "hr.high" in alarm.payload.decode(errors="replace")


def test_no_patient_data_or_secret_in_the_log(server_log):
    text, _ = server_log
    leaks = [s for s in SECRETS if s.lower() in text.lower()]
    assert not leaks, f"in the log: {leaks}"


def test_credentials_typed_into_the_user_name_never_logged(tmp_path):
    """A failed login is logged, but a user name that is no account (a password typed
    into the wrong field, a scanned MRN) is not echoed."""
    from vitalcore.server import Accounts

    acc = Accounts(log2_n=LOG2_N)
    acc.add_user("nurse1", NURSE_PW, "viewer")
    acc.save(tmp_path / "accounts.json")
    port = free_port()
    with serving(tmp_path, "--data", str(tmp_path / "data"), "--port", str(port),
                 "--accounts", str(tmp_path / "accounts.json"), "--log-level", "DEBUG") as log:
        for user in (NURSE_PW, MRN):
            with Mqtt(port, user, "anything") as c:
                assert c.connect() == 0x86
        with Mqtt(port, "nurse1", "wrong") as c:
            assert c.connect() == 0x86
        text = log.read_text()
    assert "refused connection" in text and "nurse1" in text  # known accounts are named
    assert NURSE_PW not in text and MRN not in text
