"""MQTT over TLS with a test CA; the plain listener switched off; mutual TLS.

``serve --port 0 --tls-port P --cert --key``: only TLS is served; paho and mosquitto_pub
trusting the test CA publish and are acknowledged (PUBACK = durable); a client trusting
another CA refuses the server; a plain MQTT client on the TLS port gets no CONNACK.

``--client-ca``: a client needs a certificate from the devices' CA whose common name is
the user name it logs in with (and that account's password); a certificate of another
device, one from another CA, one revoked by ``--client-crl``, or none gets no session.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest
from security_helpers import (
    Mqtt,
    free_port,
    make_ca,
    make_client_cert,
    make_crl,
    make_server_cert,
    serving,
)

from vitalcore import codec
from vitalcore.mqtt import Connect, encode
from vitalcore.server import Accounts, device_name, up_topic

DEV = 0x0B01
SECRET = "b01-secret"
OTHER = 0x0B02
OTHER_SECRET = "b02-secret"
LOST = 0x0B03  # a device reported lost: its certificate is revoked
LOST_SECRET = "b03-secret"
TS = 1_764_115_200_000_000


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca, ca_key, ca_cert = make_ca(tmp, "vitalcore-test-ca")
    wrong_ca, _, _ = make_ca(tmp, "some-other-ca")
    cert, key = make_server_cert(tmp, ca_key, ca_cert)
    acc = Accounts(log2_n=10)
    acc.add_device(DEV, SECRET)
    acc.save(tmp / "accounts.json")
    port = free_port()
    with serving(tmp, "--data", str(tmp / "data"), "--port", "0", "--tls-port", str(port),
                 "--cert", str(cert), "--key", str(key), "--accounts",
                 str(tmp / "accounts.json")) as log:
        yield {"port": port, "ca": str(ca), "wrong_ca": str(wrong_ca), "log": log}


def test_only_the_tls_listener_runs(tls_server):
    line = next(x for x in tls_server["log"].read_text().splitlines()
                if "MQTT server listening" in x)
    assert f"port None, TLS port {tls_server['port']}" in line


def test_paho_over_tls_publishes_and_is_acknowledged(tls_server):
    with Mqtt(tls_server["port"], device_name(DEV), SECRET, client_id="tls-dev",
              tls_ca=tls_server["ca"], host="localhost") as c:
        assert c.connect() == 0
        assert c.publish(up_topic(DEV), codec.encode_numerics(DEV, 1, TS, [(1, 70.0)])) == 0


def test_tls_version_is_modern(tls_server):
    ctx = ssl.create_default_context(cafile=tls_server["ca"])
    with socket.create_connection(("127.0.0.1", tls_server["port"]), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")


def test_client_trusting_another_ca_refuses_the_server(tls_server):
    c = Mqtt(tls_server["port"], device_name(DEV), SECRET, tls_ca=tls_server["wrong_ca"],
             host="localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        c.client.connect("localhost", tls_server["port"])


def test_plain_mqtt_on_the_tls_port_gets_no_connack(tls_server):
    with socket.create_connection(("127.0.0.1", tls_server["port"]), timeout=10) as s:
        s.sendall(encode(Connect(client_id="plain", username=device_name(DEV),
                                 password=SECRET.encode(), protocol_level=5), 5))
        s.settimeout(10)
        try:
            data = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert not data.startswith(b"\x20"), "a CONNACK over plain TCP on the TLS port"


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto clients missing")
def test_mosquitto_pub_over_tls(tls_server):
    def pub(cafile: str, seq: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mosquitto_pub", "-h", "localhost", "-p", str(tls_server["port"]), "-V", "mqttv5",
             "--cafile", cafile, "-u", device_name(DEV), "-P", SECRET, "-q", "1",
             "-t", up_topic(DEV), "-s"],
            input=codec.encode_numerics(DEV, seq, TS + seq, [(1, 71.0)]),
            capture_output=True, timeout=30)

    ok = pub(tls_server["ca"], 2)
    assert ok.returncode == 0, ok.stderr
    bad = pub(tls_server["wrong_ca"], 3)
    assert bad.returncode != 0 and b"tls error" in bad.stderr.lower(), bad.stderr


# -- mutual TLS (--client-ca) ------------------------------------------------------------
@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mtls")
    ca, ca_key, ca_cert = make_ca(tmp, "vitalcore-test-ca")
    devices_ca, dca_key, dca_cert = make_ca(tmp, "vitalcore-devices-ca")
    rogue = tmp / "rogue"
    rogue.mkdir()
    _, rogue_key, rogue_cert = make_ca(rogue, "rogue-ca")
    cert, key = make_server_cert(tmp, ca_key, ca_cert)
    certs = {"dev": make_client_cert(tmp, dca_key, dca_cert, device_name(DEV)),
             "other": make_client_cert(tmp, dca_key, dca_cert, device_name(OTHER)),
             "lost": make_client_cert(tmp, dca_key, dca_cert, device_name(LOST)),
             "rogue": make_client_cert(rogue, rogue_key, rogue_cert, device_name(DEV))}
    crl = make_crl(tmp, dca_key, dca_cert, [certs["lost"][0]])
    acc = Accounts(log2_n=10)
    for dev, secret in ((DEV, SECRET), (OTHER, OTHER_SECRET), (LOST, LOST_SECRET)):
        acc.add_device(dev, secret)
    acc.save(tmp / "accounts.json")
    port = free_port()
    with serving(tmp, "--data", str(tmp / "data"), "--port", "0", "--tls-port", str(port),
                 "--cert", str(cert), "--key", str(key), "--client-ca", str(devices_ca),
                 "--client-crl", str(crl), "--accounts", str(tmp / "accounts.json")) as log:
        yield {"port": port, "ca": str(ca), "log": log, **certs}


def _first_answer(srv: dict, cert: tuple | None, dev: int = DEV, secret: str = SECRET
                  ) -> bytes:
    """CONNECT as ``dev`` with ``secret`` over TLS, presenting ``cert`` (or none); the
    first bytes the server answers (b"" if it closed or the TLS layer failed)."""
    ctx = ssl.create_default_context(cafile=srv["ca"])
    if cert is not None:
        ctx.load_cert_chain(*map(str, cert))
    try:
        with socket.create_connection(("127.0.0.1", srv["port"]), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(encode(Connect(client_id="mtls", username=device_name(dev),
                                         password=secret.encode(), protocol_level=5), 5))
                return s.recv(4096)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


def test_device_certificate_and_password_log_in(mtls_server):
    connack = _first_answer(mtls_server, mtls_server["dev"])
    assert connack[:1] == b"\x20" and connack[3] == 0, connack  # CONNACK, reason Success
    with Mqtt(mtls_server["port"], device_name(DEV), SECRET, client_id="mtls-dev",
              tls_ca=mtls_server["ca"], host="localhost", tls_cert=mtls_server["dev"]) as c:
        assert c.connect() == 0
        assert c.publish(up_topic(DEV), codec.encode_numerics(DEV, 1, TS, [(1, 70.0)])) == 0


def test_certificate_of_another_device_is_refused(mtls_server):
    # the right password for the user name, but the certificate names another device
    with Mqtt(mtls_server["port"], device_name(DEV), SECRET, tls_ca=mtls_server["ca"],
              host="localhost", tls_cert=mtls_server["other"]) as c:
        assert c.connect() == 0x87
    with Mqtt(mtls_server["port"], device_name(OTHER), OTHER_SECRET, tls_ca=mtls_server["ca"],
              host="localhost", tls_cert=mtls_server["dev"]) as c:
        assert c.connect() == 0x87
    log = mtls_server["log"].read_text()
    assert f"client certificate for {device_name(OTHER)!r} used with another user name" in log
    assert SECRET not in log and OTHER_SECRET not in log


def test_the_password_is_still_checked(mtls_server):
    with Mqtt(mtls_server["port"], device_name(DEV), "not-the-secret",
              tls_ca=mtls_server["ca"], host="localhost", tls_cert=mtls_server["dev"]) as c:
        assert c.connect() == 0x86


@pytest.mark.parametrize("which", [None, "rogue"])
def test_no_certificate_or_another_ca_gets_no_connack(mtls_server, which):
    cert = None if which is None else mtls_server[which]
    assert not _first_answer(mtls_server, cert).startswith(b"\x20")


def test_revoked_certificate_gets_no_connack(mtls_server):
    assert not _first_answer(mtls_server, mtls_server["lost"], LOST, LOST_SECRET
                             ).startswith(b"\x20")


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto clients missing")
def test_mosquitto_pub_with_a_client_certificate(mtls_server):
    def pub(seq: int, *cert: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mosquitto_pub", "-h", "localhost", "-p", str(mtls_server["port"]), "-V", "mqttv5",
             "--cafile", mtls_server["ca"], *cert, "-u", device_name(DEV), "-P", SECRET,
             "-q", "1", "-t", up_topic(DEV), "-s"],
            input=codec.encode_numerics(DEV, seq, TS + seq, [(1, 72.0)]),
            capture_output=True, timeout=30)

    cert, key = mtls_server["dev"]
    ok = pub(2, "--cert", str(cert), "--key", str(key))
    assert ok.returncode == 0, ok.stderr
    assert pub(3).returncode != 0
