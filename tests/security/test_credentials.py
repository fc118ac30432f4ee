"""Credentials at rest: device secrets and user passwords only as salted scrypt hashes.

The accounts file written by ``python -m vitalcore serve --add-device/--add-user`` and the
clinical store (SQLite file and its WAL) are searched byte by byte for the secrets.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from clinical_world import LOG2_N, ROOT, build_world
from security_helpers import child_env

from vitalcore.clinical import open_store
from vitalcore.server.auth import SCRYPT_LOG2_N, verify_secret

HASH = re.compile(r"^\$scrypt\$ln=(\d+),r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
DEVICE_SECRET = "Dev1ce-S3cret-qwzx-7781"
USER_PASSWORD = "Us3r-Passw0rd-plkm-4410"


def _cli(*args: str, stdin: str) -> None:
    out = subprocess.run([sys.executable, "-m", "vitalcore", "serve", *args], input=stdin,
                         env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for stream in (out.stdout, out.stderr):
        assert DEVICE_SECRET not in stream and USER_PASSWORD not in stream


def _contains(path: Path, secret: str) -> bool:
    data = path.read_bytes()
    return any(v in data for v in (secret.encode(), secret.encode("utf-16-le"),
                                   secret.encode().hex().encode()))


def test_accounts_file_holds_only_scrypt_hashes(tmp_path):
    acc = tmp_path / "accounts.json"
    _cli("--accounts", str(acc), "--add-device", "00000000000012ab", stdin=DEVICE_SECRET + "\n")
    _cli("--accounts", str(acc), "--add-user", "ward3", "--role", "operator",
         "--scope-device", "00000000000012ab", stdin=USER_PASSWORD + "\n")
    assert acc.stat().st_mode & 0o077 == 0, "accounts file readable by others"
    assert not _contains(acc, DEVICE_SECRET) and not _contains(acc, USER_PASSWORD)
    doc = json.loads(acc.read_text())
    dev = doc["devices"]["00000000000012ab"]["secret"]
    user = doc["users"]["ward3"]["password"]
    for h, secret in ((dev, DEVICE_SECRET), (user, USER_PASSWORD)):
        m = HASH.match(h)
        assert m and int(m[1]) == SCRYPT_LOG2_N, h  # the production cost, not a test cost
        assert verify_secret(secret, h) and not verify_secret(secret + "x", h)
    # a fresh random salt per account: the same secret never hashes the same twice
    _cli("--accounts", str(acc), "--add-device", "00000000000012ac", stdin=DEVICE_SECRET + "\n")
    doc = json.loads(acc.read_text())
    assert doc["devices"]["00000000000012ac"]["secret"] != dev
    assert not list(tmp_path.glob("*.tmp"))


def test_clinical_store_holds_only_scrypt_hashes(tmp_path):
    db = tmp_path / "clinical.sqlite"
    cs = open_store(str(db), log2_n=LOG2_N)
    build_world(cs)
    cs.create_user(ROOT, "secretive", USER_PASSWORD)
    cs.register_device(ROOT, 0x7777, "VC-W1", "H1", secret=DEVICE_SECRET)
    cs.set_password("secretive", "secretive", USER_PASSWORD + "-2")
    files = [p for p in tmp_path.iterdir() if p.name.startswith("clinical.sqlite")]
    assert any(p.name.endswith("-wal") for p in files)  # the log is searched too
    for p in files:
        for secret in (DEVICE_SECRET, USER_PASSWORD, USER_PASSWORD + "-2", "root-pw",
                       "nurse1-pw"):
            assert not _contains(p, secret), (p.name, secret)
    cs.close()
    con = sqlite3.connect(db)
    try:
        hashes = [r[0] for r in con.execute("SELECT password_hash FROM users")]
        hashes += [r[0] for r in con.execute("SELECT secret_hash FROM devices "
                                             "WHERE secret_hash IS NOT NULL")]
    finally:
        con.close()
    assert len(hashes) >= 12 and all(HASH.match(h) for h in hashes), hashes
    assert len(set(hashes)) == len(hashes)  # salted: no two equal


def test_loading_an_accounts_file_others_can_read_warns(tmp_path, caplog):
    from vitalcore.server import Accounts

    acc = Accounts(log2_n=10)
    acc.add_device(0x12AB, DEVICE_SECRET)
    path = tmp_path / "accounts.json"
    acc.save(path)
    with caplog.at_level(logging.WARNING, logger="vitalcore.server.auth"):
        Accounts.load(path)
        assert not caplog.records
        path.chmod(0o644)
        Accounts.load(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"accounts file {path} has mode 644: its password hashes can be read or replaced "
        "by other users; chmod 600 it"]
