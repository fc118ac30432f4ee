"""Online backup and verified restore (vitalcore.backup): under load, with real servers.

- a store that checkpoints every few ms while a thread ingests and acknowledges: every
  frame acknowledged before each backup started is in its restore, exactly once;
- ``python -m vitalcore serve`` with accounts and a SQLite clinical store, devices
  publishing QoS 1 over MQTT (paho), ``python -m vitalcore backup`` into a .tar.zst in the
  middle of it, ``restore`` onto a fresh directory;
- PostgreSQL clinical metadata through pg_dump/pg_restore on a real cluster; SQLite and
  PostgreSQL snapshots taken while another connection keeps writing are consistent;
- corrupted, truncated, incomplete and tampered backups refused with a clear error,
  nothing restored (hypothesis flips bytes anywhere in the archive).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clinical_world import LOG2_N, T0, build_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import codec
from vitalcore.backup import backup, main, restore, verify
from vitalcore.clinical import Permission, Resource, open_store
from vitalcore.errors import AccessDenied, StorageError, UsageError
from vitalcore.server import Accounts
from vitalcore.storage.store import Store

TS = 1_764_115_200_000_000


def numerics(device: int, seq: int) -> bytes:
    return codec.encode_numerics(device, seq, TS + seq * 1000, [(1, 60.0 + seq % 50)])


def stored_seqs(store: Store, device: int) -> np.ndarray:
    t = store.read_numerics(device, 0, 2**62)
    return np.sort((t.column("ts_us").to_numpy() - TS) // 1000)


def restored_seqs(data: Path, device: int) -> np.ndarray:
    with Store(data, flush_interval_s=0) as s:
        return stored_seqs(s, device)


def assert_acked_present(seqs: np.ndarray, acked: list[tuple[int, float]], before: float
                         ) -> int:
    """Every seq acknowledged before ``before`` is in ``seqs``, and nothing twice."""
    assert len(np.unique(seqs)) == len(seqs), "a frame was restored twice"
    want = np.array([s for s, t in acked if t < before], dtype=np.int64)
    missing = np.setdiff1d(want, seqs)
    assert missing.size == 0, f"{missing.size} acknowledged frames lost, e.g. {missing[:5]}"
    return len(want)


# -- in process: a store that checkpoints constantly --------------------------------------------
def test_backups_racing_checkpoints_keep_every_acknowledged_frame(tmp_path):
    """Flushes every 5 ms (each replaces the checkpoint and truncates the WAL) while a
    thread commits and waits for durability; three backups taken meanwhile each restore
    every frame acknowledged before they started, exactly once."""
    dev = 0x51
    src = tmp_path / "src"
    store = Store(src, flush_interval_s=0.005, sync="group")
    acked: list[tuple[int, float]] = []
    stop = threading.Event()

    def ingest() -> None:
        seq = 0
        while not stop.is_set() and seq < 200_000:
            for _ in range(20):
                store.feed(numerics(dev, seq), dev)
                seq += 1
            store.wait_durable(store.commit(), timeout=10)
            now = time.time()
            acked.extend((s, now) for s in range(seq - 20, seq))

    th = threading.Thread(target=ingest)
    th.start()
    manifests = []
    try:
        deadline = time.monotonic() + 20
        while store.stats()["flushes"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(3):
            manifests.append(backup(src, tmp_path / f"b{i}"))
            time.sleep(0.3)
    finally:
        stop.set()
        th.join(30)
        store.close()
    assert not th.is_alive()
    lsns = [m["checkpoint_lsn"] for m in manifests]
    assert 0 < lsns[0] < lsns[1] < lsns[2], manifests  # checkpoints moved under the backups
    for i, m in enumerate(manifests):
        rep = restore(tmp_path / f"b{i}", tmp_path / f"r{i}")
        assert rep["checkpoint_lsn"] == m["checkpoint_lsn"]
        n = assert_acked_present(restored_seqs(tmp_path / f"r{i}", dev), acked, m["started_at"])
        assert n > 100  # the backup point was well into the load


# -- end to end: the server under load, the CLI --------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m vitalcore.backup`` (``python -m vitalcore backup`` dispatches to it)."""
    return subprocess.run([sys.executable, "-m", "vitalcore.backup", *args], env=_env(),
                          capture_output=True, text=True, timeout=300)


def _publisher(port: int, device: int, secret: str, acked: list, stop: threading.Event,
               errors: list) -> None:
    """One device: QoS 1 numerics as fast as acknowledgements come, ack times recorded."""
    import paho.mqtt.client as mqtt

    name = f"{device:016x}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(name, secret)
    try:
        c.connect("127.0.0.1", port)
        c.loop_start()
        seq = 0
        while not stop.is_set() and seq < 20_000:
            batch = [(s, c.publish(f"vc/v1/dev/{name}/up", numerics(device, s), qos=1))
                     for s in range(seq, seq + 10)]
            for s, info in batch:
                info.wait_for_publish(10)
                if not info.is_published():
                    raise AssertionError(f"no PUBACK for seq {s}")
                acked.append((s, time.time()))
            seq += 10
    except Exception as exc:  # reported by the test
        errors.append(repr(exc))
    finally:
        c.loop_stop()
        c.disconnect()


def test_backup_of_running_server_restores_on_fresh_machine(tmp_path):
    """serve (accounts + SQLite clinical store) ingesting QoS 1 from 3 devices; the backup
    CLI writes a .tar.zst meanwhile; restore onto a fresh directory brings back every frame
    acknowledged before the backup started, the clinical records and the accounts."""
    devices = {0x61: "s-61", 0x62: "s-62", 0x63: "s-63"}
    acc = Accounts(log2_n=10)
    for d, s in devices.items():
        acc.add_device(d, s)
    acc.save(tmp_path / "accounts.json")
    clinical = tmp_path / "clinical.sqlite"
    cs = open_store(str(clinical), log2_n=LOG2_N)
    build_world(cs)
    cs.admit("nurse1", "MRN-BK-001", "W1", "W1-B1", devices=[0x1001],
             display_name="Backup Patient", at_us=T0 + 10)
    cs.close()
    port = _free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalcore", "serve", "--data", str(data), "--port", str(port),
         "--accounts", str(tmp_path / "accounts.json"), "--clinical", str(clinical)],
        env=_env(), stderr=subprocess.PIPE, text=True)
    acked = {d: [] for d in devices}
    errors: list[str] = []
    stop = threading.Event()
    threads = []
    try:
        deadline = time.monotonic() + 60
        while "MQTT server listening" not in proc.stderr.readline():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        threads = [threading.Thread(target=_publisher, args=(port, d, s, acked[d], stop, errors))
                   for d, s in devices.items()]
        for t in threads:
            t.start()
        time.sleep(1.5)
        # the clinical store changes while it is backed up, too
        writer = open_store(str(clinical), log2_n=LOG2_N)
        writer.admit("nurse1", "MRN-BK-002", "W1", "W1-B2", devices=[0x1002],
                     display_name="Second Patient", at_us=T0 + 20)
        out = _cli("backup", str(tmp_path / "b.tar.zst"), "--data", str(data),
                   "--accounts", str(tmp_path / "accounts.json"), "--clinical", str(clinical))
        writer.close()
        assert out.returncode == 0, out.stderr
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not errors, errors
    assert (tmp_path / "b.tar.zst").is_file() and not list(tmp_path.glob(".b.tar.zst*"))
    assert _cli("verify", str(tmp_path / "b.tar.zst")).returncode == 0
    fresh = tmp_path / "fresh"  # "another machine": nothing of the original is used
    out = _cli("restore", str(tmp_path / "b.tar.zst"), "--data", str(fresh / "data"),
               "--accounts", str(fresh / "accounts.json"), "--clinical",
               str(fresh / "clinical.sqlite"))
    assert out.returncode == 0, out.stderr
    started = json.loads(_manifest_of(tmp_path / "b.tar.zst"))["started_at"]
    total = 0
    for d in devices:
        seqs = restored_seqs(fresh / "data", d)
        total += assert_acked_present(seqs, acked[d], started)
        assert len(seqs) < len(acked[d])  # the backup is a point in time, not the end
    assert total > 50
    assert (fresh / "accounts.json").read_bytes() == (tmp_path / "accounts.json").read_bytes()
    assert (fresh / "accounts.json").stat().st_mode & 0o077 == 0
    restored = Accounts.load(fresh / "accounts.json", log2_n=10)
    assert restored.check(f"{0x61:016x}", "s-61") is not None
    cs = open_store(str(fresh / "clinical.sqlite"), log2_n=LOG2_N)
    try:
        assert cs.verify_login("nurse1", "nurse1-pw")
        for mrn, dev in (("MRN-BK-001", 0x1001), ("MRN-BK-002", 0x1002)):
            cs.authorize("nurse1", Permission.READ_VITALS, Resource.patient(mrn))  # in W1
            assert cs.device(dev).state == "in_use"
        with pytest.raises(AccessDenied):
            cs.authorize("nurse2", Permission.READ_VITALS, Resource.patient("MRN-BK-001"))
    finally:
        cs.close()


def _manifest_of(archive: Path) -> str:
    import tarfile

    import zstandard

    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as z:
        with tarfile.open(fileobj=z, mode="r|") as tar:
            for member in tar:
                if member.name == "manifest.json":
                    return tar.extractfile(member).read().decode()
    raise AssertionError("no manifest")


# -- PostgreSQL -------------------------------------------------------------------------------
def _new_database(conninfo: str, name: str) -> str:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return conninfo.replace("dbname=postgres", f"dbname={name}")


def test_postgres_clinical_store_backed_up_with_pg_dump(tmp_path, pg_server):
    """pg_dump of a live PostgreSQL clinical store, pg_restore into an empty database:
    users, patients, bindings and the audit trail come back identical."""
    if shutil.which("pg_dump") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/pg_dump")):
        pytest.skip("pg_dump missing")
    tag = f"{os.getpid()}_{time.monotonic_ns() % 10**9}"
    src = _new_database(pg_server, f"bk_src_{tag}")
    cs = open_store(src, log2_n=LOG2_N)
    build_world(cs)
    cs.admit("nurse1", "MRN-PG-1", "W1", "W1-B1", devices=[0x1001], display_name="Pg Patient",
             at_us=T0 + 10)
    audit_before = cs.audit_log(ROOT_USER, 0, 2**62)
    cs.close()
    store = Store(tmp_path / "data", flush_interval_s=0)
    store.ingest(numerics(0x1001, 1), 0x1001)
    store.close()
    m = backup(tmp_path / "data", tmp_path / "b", clinical=src)
    assert m["clinical"]["kind"] == "postgresql"
    dst = _new_database(pg_server, f"bk_dst_{tag}")
    rep = restore(tmp_path / "b", tmp_path / "fresh", clinical=dst)
    assert rep["clinical"] == "postgresql"
    cs = open_store(dst, log2_n=LOG2_N)
    try:
        assert cs.device(0x1001).state == "in_use"
        assert cs.verify_login("nurse2", "nurse2-pw")
        after = cs.audit_log(ROOT_USER, 0, 2**62)
        assert after[:len(audit_before)] == audit_before
    finally:
        cs.close()
    assert restored_seqs(tmp_path / "fresh", 0x1001).tolist() == [1]


ROOT_USER = "root"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_clinical_snapshot_is_transactionally_consistent(tmp_path, kind, request):
    """Users created by another connection all through the backup: the restored store
    holds a consistent snapshot: a prefix of the users, each with exactly its audit
    record (written in the same transaction), not a torn copy."""
    if kind == "sqlite":
        src, dst = str(tmp_path / "c.sqlite"), str(tmp_path / "fresh" / "c.sqlite")
    else:
        conninfo = request.getfixturevalue("pg_server")
        tag = f"{os.getpid()}_{time.monotonic_ns() % 10**9}"
        src = _new_database(conninfo, f"bk_live_{tag}")
        dst = _new_database(conninfo, f"bk_live_dst_{tag}")
    cs = open_store(src, log2_n=LOG2_N)
    cs.bootstrap_administrator(ROOT_USER, "root-pw")
    store = Store(tmp_path / "data", flush_interval_s=0)
    store.close()
    stop = threading.Event()
    created: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            cs.create_user(ROOT_USER, f"w{i}", "pw-of-w")
            created.append(f"w{i}")
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        while len(created) < 20:
            time.sleep(0.01)
        backup(tmp_path / "data", tmp_path / "b", clinical=src)
        during = len(created)
    finally:
        stop.set()
        th.join(30)
        cs.close()
    restore(tmp_path / "b", tmp_path / "fresh" / "data", clinical=dst)
    r = open_store(dst, log2_n=LOG2_N)
    try:
        audited = {e.detail for e in r.audit_log(ROOT_USER, 0, 2**62)
                   if e.action == "create_user"}
        users = [f"w{i}" for i in range(len(created)) if r.login_hash(f"w{i}") is not None]
    finally:
        r.close()
    assert 20 <= len(users) <= during
    assert users == [f"w{i}" for i in range(len(users))]  # a prefix: no hole
    assert audited == {json.dumps({"user": u}, sort_keys=True) for u in users}


# -- refusals ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_backup(tmp_path_factory):
    """A small directory backup and its .tar.zst (store with WAL and Parquet, accounts)."""
    root = tmp_path_factory.mktemp("small")
    store = Store(root / "data", flush_interval_s=0)
    for seq in range(40):
        store.ingest(numerics(0x71, seq), 0x71)
        if seq == 20:
            store.flush()
    store.close(flush=False)
    acc = Accounts(log2_n=10)
    acc.add_device(0x71, "s-71")
    acc.save(root / "accounts.json")
    backup(root / "data", root / "dir", accounts=root / "accounts.json")
    backup(root / "data", root / "b.tar.zst", accounts=root / "accounts.json")
    return root


def test_restore_round_trip_and_destinations_never_overwritten(small_backup, tmp_path):
    for src in ("dir", "b.tar.zst"):
        rep = restore(small_backup / src, tmp_path / src)
        assert rep["frames_replayed"] == 19 and rep["checkpoint_lsn"] > 0
        assert restored_seqs(tmp_path / src, 0x71).tolist() == list(range(40))
    with pytest.raises(UsageError, match="not empty"):
        restore(small_backup / "dir", tmp_path / "dir")
    (tmp_path / "acc.json").write_text("{}")
    with pytest.raises(UsageError, match="exists already"):
        restore(small_backup / "dir", tmp_path / "new", accounts=tmp_path / "acc.json")
    with pytest.raises(UsageError, match="no clinical store"):
        restore(small_backup / "dir", tmp_path / "new2", clinical=str(tmp_path / "c.sqlite"))
    with pytest.raises(UsageError, match="exists already"):
        backup(small_backup / "data", small_backup / "dir")
    with pytest.raises(UsageError, match="not a vitalcore data directory"):
        backup(tmp_path / "acc.json", tmp_path / "x")


@pytest.mark.parametrize("damage, message", [
    ("flip", "is corrupted: store/history/"),
    ("truncate", "is corrupted: store/wal/"),
    ("remove", "is missing"),
    ("extra", "is not in the manifest"),
    ("manifest", "bad manifest.json"),
])
def test_damaged_directory_backup_refused_and_nothing_restored(small_backup, tmp_path,
                                                               damage, message):
    b = tmp_path / "b"
    shutil.copytree(small_backup / "dir", b)
    parquet = next(b.glob("store/history/**/*.parquet"))
    seg = next(b.glob("store/wal/*.seg"))
    if damage == "flip":
        raw = bytearray(parquet.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        parquet.write_bytes(bytes(raw))
    elif damage == "truncate":
        seg.write_bytes(seg.read_bytes()[:-3])
    elif damage == "remove":
        parquet.unlink()
    elif damage == "extra":
        (b / "store" / "wal" / "wal-99999999999999999999.seg").write_bytes(b"x")
    else:
        (b / "manifest.json").write_text("{not json")
    with pytest.raises(StorageError, match=message):
        verify(b)
    with pytest.raises(StorageError, match=message):
        restore(b, tmp_path / "r", accounts=tmp_path / "acc.json")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    assert not (tmp_path / "acc.json").exists()
    assert main(["restore", str(b), "--data", str(tmp_path / "r2")]) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), cut=st.booleans())
def test_any_damage_to_the_archive_is_refused(small_backup, tmp_path, where, bit, cut):
    """A flipped bit anywhere in the .tar.zst, or a truncation: refused, nothing restored."""
    raw = bytearray((small_backup / "b.tar.zst").read_bytes())
    i = int(where * len(raw))
    if cut:
        raw = raw[:i]
    else:
        raw[i] ^= 1 << bit
    tag = f"{i}-{bit}-{cut}-{time.monotonic_ns()}"
    bad = tmp_path / f"bad-{tag}.tar.zst"
    bad.write_bytes(bytes(raw))
    target = tmp_path / f"r-{tag}"
    try:
        restore(bad, target)
    except StorageError as exc:
        assert "corrupted" in str(exc) or "incomplete" in str(exc), exc
        assert not target.exists() or not any(target.iterdir())
    else:  # a flip inside tar padding or header slack that changes no file content
        assert restored_seqs(target, 0x71).tolist() == list(range(40))
    finally:
        bad.unlink()
