"""Regression tests of the storage fixes the fault scenarios led to (in process, fast).

- A full disk fails the write-ahead log; once space returns, :meth:`Store.commit` reopens
  it in place, and the frames of the failed commits (never acknowledged) are accepted
  again when their devices resend them, not dropped as duplicates.
- A store on a file system that turned read-only refuses to open with a StorageError
  naming EROFS (it leaked an OSError from the history's directory fsync).
"""

from __future__ import annotations

import os

import pytest
from faults_harness import frame
from faults_scenarios import (
    ext4_error_trigger,
    mount_ext4,
    mount_tmpfs,
    remount,
    umount,
)

from vitalcore.errors import StorageError
from vitalcore.storage.store import Store

DEV = 0xF20001
FRAMES_PER_COMMIT = 64


def _message(first: int) -> bytes:
    return b"".join(frame(DEV, s) for s in range(first, first + FRAMES_PER_COMMIT))


def _seqs(data) -> list[int]:
    with Store(data, flush_interval_s=0) as store:
        return sorted(store.read_numerics(DEV, 0, 2**62).column("seq").to_pylist())


@pytest.fixture
def tmpfs(tmp_path):
    disk = tmp_path / "disk"
    why = mount_tmpfs(disk, "192k")
    if why:
        pytest.skip(why)
    yield disk
    umount(disk)


def test_full_disk_recovers_in_place_and_takes_the_retransmissions(tmpfs):
    store = Store(tmpfs / "data", flush_interval_s=0, wal_retry_s=0)
    acked: list[int] = []
    unacked: list[int] = []
    seq = 0
    try:
        for _ in range(20_000):  # bounded: 192 KiB fill up long before
            store.feed(_message(seq), DEV)
            try:
                store.wait_durable(store.commit(), timeout=10)
            except StorageError as exc:
                assert "ENOSPC" in str(exc)
                unacked.append(seq)
                seq += FRAMES_PER_COMMIT
                break
            acked.append(seq)
            seq += FRAMES_PER_COMMIT
        assert unacked, "the disk never filled up"
        assert store.wal.failed
        # still full: the store refuses, naming the cause, and acknowledges nothing
        store.feed(_message(seq), DEV)
        with pytest.raises(StorageError):
            store.wait_durable(store.commit(), timeout=10)
        unacked.append(seq)
        seq += FRAMES_PER_COMMIT
        remount(tmpfs, "size=64m")
        duplicates_before = store.counters["duplicates"]
        for first in unacked:  # the devices resend what was never acknowledged
            store.feed(_message(first), DEV)
        store.feed(_message(seq), DEV)
        store.wait_durable(store.commit(), timeout=10)
        assert store.counters["wal_reopens"] >= 1
        assert store.counters["duplicates"] == duplicates_before
        acked += unacked + [seq]
    finally:
        store.close()
    expected = sorted(s for first in acked for s in range(first, first + FRAMES_PER_COMMIT))
    assert _seqs(tmpfs / "data") == expected  # each exactly once


def test_full_disk_reopen_keeps_refusing_while_full(tmpfs):
    """With the disk still full, every commit fails and nothing is reported durable."""
    store = Store(tmpfs / "data", flush_interval_s=0, wal_retry_s=0)
    try:
        durable = 0
        for i in range(20_000):
            store.feed(_message(i * FRAMES_PER_COMMIT), DEV)
            try:
                store.wait_durable(store.commit(), timeout=10)
                durable = store.durable_lsn
            except StorageError:
                break
        for i in range(3):
            store.feed(_message(10**6 + i * FRAMES_PER_COMMIT), DEV)
            with pytest.raises(StorageError, match="ENOSPC|No space"):
                store.wait_durable(store.commit(), timeout=10)
        assert store.durable_lsn == durable
    finally:
        with pytest.raises(StorageError):
            store.close()


def test_store_on_a_file_system_turned_read_only_raises_storage_error(tmp_path):
    disk = tmp_path / "disk"
    why = mount_ext4(tmp_path / "ext4.img", disk, size_mb=16)
    if why:
        pytest.skip(why)
    try:
        with Store(disk / "data", flush_interval_s=0) as store:
            store.feed(_message(0), DEV)
            store.wait_durable(store.commit())
            store.flush()
            store.feed(_message(FRAMES_PER_COMMIT), DEV)
            store.wait_durable(store.commit())
            store.close(flush=False)
        trigger = ext4_error_trigger(disk)
        if not trigger.exists():
            pytest.skip(f"{trigger} missing")
        trigger.write_text("vitalcore test\n")
        with pytest.raises(StorageError, match="EROFS|Read-only"):
            Store(disk / "data", flush_interval_s=0)
    finally:
        umount(disk)


def test_reopened_log_is_synced_on_open(tmp_path, monkeypatch):
    """The records a reopened log reports durable at once are synced first (after a
    process crash they may sit in the page cache only)."""
    from vitalcore.storage import wal as wal_module

    with Store(tmp_path / "s", flush_interval_s=0) as store:
        store.feed(_message(0), DEV)
        store.wait_durable(store.commit())
        store.close(flush=False)
    synced = []
    real = wal_module._sync_file
    monkeypatch.setattr(wal_module, "_sync_file", lambda fd: (synced.append(fd), real(fd)))
    with Store(tmp_path / "s", flush_interval_s=0) as store:
        assert synced, "the recovered segment was not synced before being reported durable"
        assert store.durable_lsn == 1
        assert os.path.exists(tmp_path / "s" / "wal")



def test_reopen_attempts_back_off_while_the_disk_stays_full(tmpfs):
    """Each attempt scans the log on the committing thread (the event loop): while the
    disk stays full they come at doubling intervals, and at the short one again after
    the disk is usable and a reopened log committed."""
    import time

    store = Store(tmpfs / "data", flush_interval_s=0, wal_retry_s=0.2)
    seq = 0
    try:
        for _ in range(20_000):
            store.feed(_message(seq), DEV)
            seq += FRAMES_PER_COMMIT
            try:
                store.wait_durable(store.commit(), timeout=10)
            except StorageError:
                break
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.9:  # commits every 20 ms, the disk still full
            store.feed(_message(seq), DEV)
            seq += FRAMES_PER_COMMIT
            try:
                store.wait_durable(store.commit(), timeout=10)
            except StorageError:
                pass
            time.sleep(0.02)
        # attempts at 0, 0.2, 0.6, 1.4 s (doubling); a fixed 0.2 s would make ~10
        assert 2 <= store.counters["wal_reopens"] <= 4
        remount(tmpfs, "size=64m")
        deadline = time.monotonic() + 10
        while True:
            store.feed(_message(seq), DEV)
            seq += FRAMES_PER_COMMIT
            try:
                store.wait_durable(store.commit(), timeout=10)
                break
            except StorageError:
                assert time.monotonic() < deadline, "no recovery after the disk grew"
                time.sleep(0.05)
        store.feed(_message(seq), DEV)
        store.commit()  # sees the reopened log durable: the delay is short again
        assert store._wal_retry_delay == 0.2
    finally:
        store.close()


def test_a_second_store_on_a_live_directory_deletes_nothing(tmp_path, monkeypatch):
    """Opening a second Store on a directory in use must fail before touching it: its
    recovery deletes Parquet files beyond the checkpoint, and a live flush has written
    such files until it writes its checkpoint (after which the WAL below it is deleted,
    so deleting them then loses acknowledged frames)."""
    import threading

    data = tmp_path / "s"
    live = Store(data, flush_interval_s=0)
    live.feed(_message(0), DEV)
    live.wait_durable(live.commit())
    live.flush()
    live.feed(_message(FRAMES_PER_COMMIT), DEV)
    live.wait_durable(live.commit())
    in_flush, go_on = threading.Event(), threading.Event()
    checkpoint = live._write_checkpoint

    def paused_checkpoint(lsn, state):  # the flush stops between Parquet and checkpoint
        in_flush.set()
        go_on.wait(10)
        checkpoint(lsn, state)

    monkeypatch.setattr(live, "_write_checkpoint", paused_checkpoint)
    flusher = threading.Thread(target=live.flush)
    flusher.start()
    try:
        assert in_flush.wait(10)
        written = live.history.files_after(live._checkpoint_lsn)
        assert written
        with pytest.raises(StorageError, match="already open"):
            Store(data, flush_interval_s=0)
        assert all(p.exists() for p in written)
    finally:
        go_on.set()
        flusher.join()
        live.close()
    assert _seqs(data) == list(range(2 * FRAMES_PER_COMMIT))


def test_restart_removes_journal_entries_a_crash_left_half_written(tmp_path):
    data = tmp_path / "s"
    with Store(data, flush_interval_s=0) as store:
        store.feed(_message(0), DEV)
        store.wait_durable(store.commit())
    name = ".00000000000000000002-00000000000000000002.txt.0badc0de.tmp"
    leftover = data / "history" / "_journal" / name
    leftover.write_text("a/b.parquet\n")
    with Store(data, flush_interval_s=0):
        assert not leftover.exists()
    assert _seqs(data) == list(range(FRAMES_PER_COMMIT))
