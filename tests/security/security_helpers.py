"""Helpers of the security tests: a served installation, a synchronous paho client, a test CA.

Everything runs for real: ``python -m vitalcore serve`` in a subprocess (importing the
vitalcore under test), paho-mqtt clients over TCP/TLS on 127.0.0.1, a CA made with the
``cryptography`` package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TIMEOUT = 10.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment of a child that imports the vitalcore under test."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


@contextlib.contextmanager
def serving(tmp: Path, *args: str, ready: str = "MQTT server listening",
            log_name: str = "serve.log"):
    """``python -m vitalcore serve ARGS`` with stderr (its log) in ``tmp/log_name``.

    Yields the log path once ``ready`` appears in it; SIGTERM at the end, exit 0 expected.
    """
    log_path = tmp / log_name
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vitalcore", "serve", *args],
                                env=child_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while ready not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log_path.read_text()[-3000:]


class Mqtt:
    """A synchronous facade over one paho-mqtt (MQTT 5) client: each call waits for its
    answer and returns the reason code(s) the server sent."""

    def __init__(self, port: int, user: str | None, password: str | None, *,
                 client_id: str = "", tls_ca: str | None = None, host: str = "127.0.0.1",
                 tls_cert: tuple[Path, Path] | None = None) -> None:
        self._q: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password)
        if tls_ca is not None:
            cert, key = tls_cert or (None, None)
            c.tls_set(ca_certs=tls_ca, certfile=cert and str(cert), keyfile=key and str(key))
        c.on_connect = lambda cl, ud, flags, rc, props: self._q.put(("connack", rc.value))
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self._q.put(
            ("suback", [r.value for r in rcs]))
        c.on_publish = lambda cl, ud, mid, rc, props: self._q.put(("puback", rc.value))
        c.on_message = lambda cl, ud, msg: self.messages.put(msg)
        c.on_disconnect = lambda cl, ud, flags, rc, props: self._q.put(("disconnect", rc.value))
        self.client = c
        self.host, self.port = host, port

    def connect(self) -> int:
        """CONNECT; the CONNACK reason code (0 = accepted)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        kind, rc = self._next()
        assert kind in ("connack", "disconnect"), kind
        return rc

    def _next(self) -> tuple[str, object]:
        try:
            return self._q.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no answer from the server in time") from None

    def subscribe(self, flt: str, qos: int = 1) -> int:
        """SUBSCRIBE one filter; its SUBACK reason code (0x87 = not authorised)."""
        self.client.subscribe(flt, qos)
        kind, rcs = self._next()
        assert kind == "suback", kind
        return rcs[0]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """PUBLISH at QoS 1; the PUBACK reason code (0x87 = not authorised)."""
        self.client.publish(topic, payload, qos=qos)
        kind, rc = self._next()
        assert kind == "puback", kind
        return rc

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Mqtt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a test PKI ------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(where: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA; returns (PEM path, key, certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    path = where / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _issue(where: Path, stem: str, ca_key, ca_cert, cn: str, usage, *extensions
           ) -> tuple[Path, Path]:
    """A certificate for ``cn`` signed by the CA (extended key usage ``usage``, any other
    extensions), written as ``where/stem.pem`` and its key as ``where/stem.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = where / f"{stem}.pem", where / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def make_server_cert(where: Path, ca_key, ca_cert) -> tuple[Path, Path]:
    """A server certificate for localhost/127.0.0.1 signed by the CA; (cert, key) PEMs."""
    return _issue(where, "server", ca_key, ca_cert, "vitalcore-test-server",
                  x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                  x509.SubjectAlternativeName([
                      x509.DNSName("localhost"),
                      x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))


def make_client_cert(where: Path, ca_key, ca_cert, cn: str) -> tuple[Path, Path]:
    """A TLS client certificate with subject common name ``cn`` signed by the CA;
    (cert, key) PEMs named after ``cn``."""
    return _issue(where, f"client-{cn}", ca_key, ca_cert, cn,
                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)


def make_crl(where: Path, ca_key, ca_cert, revoked: list[Path]) -> Path:
    """A revocation list of the CA naming the certificates at ``revoked``; its PEM path."""
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=1)))
    for path in revoked:
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1)).build())
    crl_path = where / "crl.pem"
    crl_path.write_bytes(builder.sign(ca_key, hashes.SHA256())
                         .public_bytes(serialization.Encoding.PEM))
    return crl_path
