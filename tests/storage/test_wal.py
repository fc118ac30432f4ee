"""Tests of vitalcore.storage.wal: format, recovery, policies, failures, asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vitalcore.codec import crc32c
from vitalcore.errors import BackPressureError, StorageError, UsageError
from vitalcore.storage import wal as walmod
from vitalcore.storage.wal import (
    BLOCK_HEADER_SIZE,
    BLOCK_MAGIC,
    SyncPolicy,
    WriteAheadLog,
    segment_name,
)

POLICIES = [p.value for p in SyncPolicy]


def records(n: int, seed: int = 0) -> list[bytes]:
    """Distinct records of 0..300 bytes, some compressible, some not."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        size = int(rng.integers(0, 300))
        body = rng.integers(0, 256 if i % 3 else 4, size, dtype=np.uint8).tobytes()
        out.append(struct.pack("<I", i) + body)
    return out


def write_log(path: Path, recs: list[bytes], **options) -> None:
    with WriteAheadLog(path, **options) as wal:
        lsns = [wal.append(r) for r in recs]
        assert lsns == list(range(1, len(recs) + 1))


def replayed(path: Path, after: int = 0, **options) -> list[tuple[int, bytes]]:
    with WriteAheadLog(path, **options) as wal:
        return [(lsn, bytes(rec)) for lsn, rec in wal.replay(after)]


def block_offsets(seg: Path) -> list[tuple[int, int, int, int]]:
    """(offset, end, first LSN, count) of every block of a segment, read independently."""
    data = seg.read_bytes()
    out, off = [], 0
    while off < len(data):
        magic, version, codec, _, first, count, raw, stored = struct.unpack_from(
            "<4sBBHQIII", data, off
        )
        assert magic == BLOCK_MAGIC and version == 1 and codec in (0, 1)
        end = off + BLOCK_HEADER_SIZE + stored
        (crc,) = struct.unpack_from("<I", data, off + 28)
        assert crc == crc32c(data[off + 32 : end], crc32c(data[off : off + 28]))
        out.append((off, end, first, count))
        off = end
    assert off == len(data)
    return out


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("wal-*.seg"))


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("policy", POLICIES)
def test_round_trip_each_policy(tmp_path: Path, policy: str) -> None:
    recs = records(500)
    with WriteAheadLog(tmp_path, sync=policy, segment_bytes=8192) as wal:
        assert wal.sync == policy and wal.last_lsn == 0 and wal.durable_lsn == 0
        lsns = [wal.append(r) for r in recs[:250]]
        many = wal.append_many(recs[250:])
        assert lsns + list(many) == list(range(1, 501))
        wal.wait_durable(500)
        assert wal.durable_lsn == 500
        live = [(lsn, bytes(r)) for lsn, r in wal.replay()]  # while open
    stats = wal.stats()  # after close
    assert live == list(enumerate(recs, 1))
    assert replayed(tmp_path) == live
    assert stats["records"] == 500 and stats["bytes_in"] == sum(map(len, recs))
    assert stats["raw_bytes"] == stats["bytes_in"] + 4 * 500
    assert stats["bytes_written"] == sum(p.stat().st_size for p in segments(tmp_path))
    if policy == "none":
        assert stats["fsyncs"] == stats["rollovers"] + 1  # rollovers and close only
    else:
        assert stats["fsyncs"] == stats["commits"]  # one per block


def test_any_buffer_is_copied_once(tmp_path: Path) -> None:
    arr = np.arange(6, dtype="<i2")
    buf = bytearray(b"mutable")
    with WriteAheadLog(tmp_path) as wal:
        wal.append(buf)
        wal.append(memoryview(b"xxabcxx")[2:5])
        wal.append(arr)
        wal.append(arr[::2])  # non-contiguous: copied in C order
        wal.append(b"")
        buf[:] = b"changed"  # the log holds its own copy
    got = [r for _, r in replayed(tmp_path)]
    assert got == [b"mutable", b"abc", arr.tobytes(), arr[::2].tobytes(), b""]


def test_records_longer_than_a_wire_frame(tmp_path: Path) -> None:
    big = np.random.default_rng(2).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    recs = [b"small", big, b"", big[:16417], big[:16416]]
    with WriteAheadLog(tmp_path) as wal:
        wal.wait_durable(wal.append_many(recs)[-1])  # one block, both framing paths
        assert wal.stats()["commits"] == 1
    assert [r for _, r in replayed(tmp_path)] == recs


def test_replayed_records_are_read_only_views(tmp_path: Path) -> None:
    write_log(tmp_path, [b"abc"])
    with WriteAheadLog(tmp_path) as wal:
        ((_, rec),) = list(wal.replay())
        assert isinstance(rec, memoryview) and rec.readonly
        with pytest.raises(TypeError):
            rec[0] = 0


def test_lsns_continue_across_reopen(tmp_path: Path) -> None:
    recs = records(90)
    for i, policy in enumerate(POLICIES):
        with WriteAheadLog(tmp_path, sync=policy, segment_bytes=2048) as wal:
            assert wal.last_lsn == wal.durable_lsn == 30 * i
            assert [wal.append(r) for r in recs[30 * i : 30 * i + 30]] == list(
                range(30 * i + 1, 30 * i + 31)
            )
    assert replayed(tmp_path) == list(enumerate(recs, 1))


def test_an_empty_log_reopens_at_lsn_1(tmp_path: Path) -> None:
    WriteAheadLog(tmp_path).close()
    with WriteAheadLog(tmp_path) as wal:
        assert wal.last_lsn == 0 and list(wal.replay()) == []
        assert wal.append(b"x") == 1
    assert [p.name for p in segments(tmp_path)] == [segment_name(1)]


@pytest.mark.parametrize("after", [0, 1, 7, 63, 64, 65, 199, 200, 201, 500])
def test_replay_after_lsn(tmp_path: Path, after: int) -> None:
    recs = records(200)
    with WriteAheadLog(tmp_path, segment_bytes=1024) as wal:
        for i in range(0, 200, 64):  # blocks end at 64, 128, 192 at least
            wal.append_many(recs[i : i + 64])
            wal.wait_durable(wal.last_lsn)
    assert replayed(tmp_path, after) == [(i, r) for i, r in enumerate(recs, 1) if i > after]


def test_replay_sees_only_records_durable_when_called(tmp_path: Path, monkeypatch) -> None:
    gate = threading.Event()
    real_sync = walmod._sync_file
    monkeypatch.setattr(walmod, "_sync_file", lambda fd: (gate.wait(10), real_sync(fd)))
    with WriteAheadLog(tmp_path, sync="always") as wal:
        gate.set()
        wal.wait_durable(wal.append(b"one"))
        gate.clear()
        wal.append(b"two")  # written, never synced while the gate is closed
        it = wal.replay()
        gate.set()
        wal.wait_durable(2)
        assert [bytes(r) for _, r in it] == [b"one"]
        assert [bytes(r) for _, r in wal.replay()] == [b"one", b"two"]


def test_segment_rollover(tmp_path: Path) -> None:
    recs = records(400)
    with WriteAheadLog(tmp_path, segment_bytes=2048, group_commit_ms=0) as wal:
        for r in recs:
            wal.wait_durable(wal.append(r))  # one block per record
        stats = wal.stats()
    segs = segments(tmp_path)
    assert len(segs) == stats["segments"] == stats["rollovers"] + 1 > 10
    expected_first = 1
    for seg in segs:
        blocks = block_offsets(seg)
        assert seg.name == segment_name(expected_first) == segment_name(blocks[0][2])
        assert seg.stat().st_size <= 2048 or len(blocks) == 1
        for _, _, first, count in blocks:
            assert first == expected_first
            expected_first += count
    assert expected_first == 401
    assert replayed(tmp_path) == list(enumerate(recs, 1))


def test_a_large_batch_is_split_into_capped_blocks(tmp_path: Path) -> None:
    recs = records(600)
    raw = sum(map(len, recs)) + 4 * len(recs)
    with WriteAheadLog(tmp_path, segment_bytes=8192, sync="always") as wal:
        wal.wait_durable(wal.append_many(recs)[-1])  # one call, far more than a block
        stats = wal.stats()
    blocks = [b for seg in segments(tmp_path) for b in block_offsets(seg)]
    assert stats["commits"] == len(blocks) >= raw // 8192
    assert max(count for *_, count in blocks) < 100  # ~8 KiB of ~150-byte records each
    assert replayed(tmp_path) == list(enumerate(recs, 1))


def test_a_block_larger_than_a_segment_gets_its_own(tmp_path: Path) -> None:
    big = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    write_log(tmp_path, [b"a", big, b"b"], segment_bytes=1024, group_commit_ms=0, sync="always")
    assert replayed(tmp_path) == [(1, b"a"), (2, big), (3, b"b")]
    assert any(p.stat().st_size > 1024 for p in segments(tmp_path))


def test_truncate_before(tmp_path: Path) -> None:
    recs = records(300)
    with WriteAheadLog(tmp_path, segment_bytes=1024) as wal:
        for i in range(0, 300, 10):
            wal.wait_durable(wal.append_many(recs[i : i + 10])[-1])
        firsts = [int(p.name[4:24]) for p in segments(tmp_path)]
        assert len(firsts) > 5
        k = firsts[3] + 1  # inside the 4th segment: the first three go
        assert wal.truncate_before(k) == 3
        assert wal.truncate_before(k) == 0
        got = [lsn for lsn, _ in wal.replay()]
        assert got == list(range(firsts[3], 301))
        assert [lsn for lsn, _ in wal.replay(150)] == list(range(151, 301))
        with pytest.raises(UsageError):
            wal.truncate_before(302)
        n_left = len(segments(tmp_path))
        assert wal.truncate_before(301) == n_left - 1  # never the active segment
        assert wal.stats()["segments"] == 1
        assert wal.append(b"next") == 301
    with WriteAheadLog(tmp_path) as wal:  # LSNs continue after truncation
        assert wal.last_lsn == 301
        assert wal.append(b"more") == 302
        wal.wait_durable(302)
        assert [bytes(r) for _, r in wal.replay(300)] == [b"next", b"more"]


DOC_BLOCK = bytes.fromhex(  # docs/storage.md, "On-disk format": the example block
    "56 43 57 4c 01 00 00 00 01 00 00 00 00 00 00 00"
    "03 00 00 00 1a 00 00 00 1a 00 00 00 d5 9f c2 bc"
    "05 00 00 00 68 65 6c 6c 6f 05 00 00 00 76 69 74 61 6c 04 00 00 00 63 6f 72 65"
)
DOC_ZSTD_HEADER = bytes.fromhex(
    "56 43 57 4c 01 01 00 00 04 00 00 00 00 00 00 0028 00 00 00 60 13 00 00 1d 00 00 00 f9 35 6e 7b"
)


def test_format_matches_the_documented_example(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path, sync="always") as wal:
        wal.wait_durable(wal.append_many([b"hello", b"vital", b"core"])[-1])
        wal.append_many([b"ECG " * 30] * 40)
    data = (tmp_path / segment_name(1)).read_bytes()
    assert data[: len(DOC_BLOCK)] == DOC_BLOCK
    second = data[len(DOC_BLOCK) :]
    assert second[:BLOCK_HEADER_SIZE] == DOC_ZSTD_HEADER
    assert len(second) == BLOCK_HEADER_SIZE + 0x1D
    assert block_offsets(tmp_path / segment_name(1))[1][2:] == (4, 40)


# ------------------------------------------------------------------ recovery
def _small_log(path: Path) -> tuple[list[bytes], list[tuple[int, int, int, int]]]:
    """Two segments; the last holds four blocks. Returns records and last-segment blocks."""
    recs = [r[:40] for r in records(40, seed=3)]  # 5 per block, 3 to 5 blocks per segment
    with WriteAheadLog(path, segment_bytes=1024, group_commit_ms=0, sync="always") as wal:
        for i in range(0, 40, 5):
            wal.wait_durable(wal.append_many(recs[i : i + 5])[-1])
    segs = segments(path)
    assert len(segs) >= 2
    return recs, block_offsets(segs[-1])


def test_torn_tail_at_every_offset_of_the_last_block(tmp_path: Path, caplog) -> None:
    src = tmp_path / "src"
    recs, blocks = _small_log(src)
    last = segments(src)[-1]
    start, end, first, _ = blocks[-1]
    assert len(blocks) >= 2 and end - start > BLOCK_HEADER_SIZE
    work = tmp_path / "work"
    for cut in range(start, end):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work)
        os.truncate(work / last.name, cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vitalcore.storage.wal"):
            with WriteAheadLog(work) as wal:
                assert wal.last_lsn == first - 1, cut
                assert wal.stats()["truncated_on_open"] == cut - start
                assert (work / last.name).stat().st_size == start  # cut back to the good end
                got = [(lsn, bytes(r)) for lsn, r in wal.replay()]
                assert got == list(enumerate(recs[: first - 1], 1)), cut
                assert wal.append(b"after") == first  # the log goes on
        if cut > start:
            assert any(f"truncated {cut - start} bytes" in r.getMessage() for r in caplog.records)
        assert replayed(work)[-1] == (first, b"after")


@pytest.mark.parametrize("garbage", [b"\0" * 4096, b"\xff" * 7, BLOCK_MAGIC + b"\x01" * 60])
def test_garbage_after_the_last_block_is_cut(tmp_path: Path, garbage: bytes, caplog) -> None:
    recs, blocks = _small_log(tmp_path)
    last = segments(tmp_path)[-1]
    with open(last, "ab") as f:
        f.write(garbage)
    with caplog.at_level(logging.WARNING, logger="vitalcore.storage.wal"):
        assert replayed(tmp_path) == list(enumerate(recs, 1))
    assert f"truncated {len(garbage)} bytes" in caplog.text
    assert last.stat().st_size == blocks[-1][1]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_corrupt_block_in_an_older_segment_is_an_error(tmp_path: Path) -> None:
    _small_log(tmp_path)
    first = segments(tmp_path)[0]
    start, end, _, _ = block_offsets(first)[-1]  # even its very last block
    _flip(first, (start + end) // 2)
    with pytest.raises(StorageError, match=r"corrupt block .* not the last segment"):
        WriteAheadLog(tmp_path)
    # nothing was modified or left locked by the failed open
    assert first.stat().st_size == end
    _flip(first, (start + end) // 2)
    WriteAheadLog(tmp_path).close()


def test_corrupt_middle_block_of_the_last_segment_is_an_error(tmp_path: Path) -> None:
    _, blocks = _small_log(tmp_path)
    last = segments(tmp_path)[-1]
    start, end, _, _ = blocks[1]
    _flip(last, start + 30)  # inside the header's CRC-covered fields
    with pytest.raises(StorageError, match=r"followed by a valid block .* refusing"):
        WriteAheadLog(tmp_path)
    assert last.stat().st_size == blocks[-1][1]


def test_corrupt_block_detected_by_replay(tmp_path: Path) -> None:
    _, blocks = _small_log(tmp_path)
    last = segments(tmp_path)[-1]
    with WriteAheadLog(tmp_path) as wal:
        _flip(last, blocks[0][0] + BLOCK_HEADER_SIZE + 1)  # bit rot after open
        with pytest.raises(StorageError, match="CRC-32C mismatch"):
            list(wal.replay())


def test_missing_middle_segment_is_an_error(tmp_path: Path) -> None:
    write_log(tmp_path, records(100), segment_bytes=1024, group_commit_ms=0, sync="always")
    segs = segments(tmp_path)
    assert len(segs) >= 3
    segs[1].unlink()
    with pytest.raises(StorageError, match="LSN gap"):
        WriteAheadLog(tmp_path)


def test_crc_valid_block_of_unknown_version_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, [b"abc"])
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[4] = 2  # a future format version, with a CRC that matches
    body = bytes(data[32:])
    data[28:32] = struct.pack("<I", crc32c(body, crc32c(bytes(data[:28]))))
    seg.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="format version 2"):
        WriteAheadLog(tmp_path)


def test_foreign_segment_names_are_refused(tmp_path: Path) -> None:
    write_log(tmp_path, [b"abc"])
    (tmp_path / "wal-12.seg").write_bytes(b"")
    with pytest.raises(StorageError, match="unexpected file"):
        WriteAheadLog(tmp_path)
    (tmp_path / "wal-12.seg").unlink()
    (tmp_path / "notes.txt").write_text("other files are ignored")
    assert replayed(tmp_path) == [(1, b"abc")]


ORIGINAL = records(30, seed=9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["flip", "cut", "append", "overwrite"]),
    where=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=64),
)
def test_hostile_segment_bytes(kind: str, where: float, junk: bytes) -> None:
    """Any damage: either a clean StorageError or a consecutive, byte-exact prefix."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d)
        with WriteAheadLog(path, segment_bytes=1 << 20, group_commit_ms=0, sync="always") as w:
            for i in range(0, 30, 3):
                w.wait_durable(w.append_many(ORIGINAL[i : i + 3])[-1])
        seg = segments(path)[0]
        data = bytearray(seg.read_bytes())
        pos = min(int(where * len(data)), len(data) - 1)
        if kind == "flip":
            data[pos] ^= junk[0] or 1
        elif kind == "cut":
            del data[pos:]
        elif kind == "append":
            data += junk
        else:
            data[pos : pos + len(junk)] = junk
        seg.write_bytes(bytes(data))
        try:
            got = replayed(path)
        except StorageError:
            assert kind in ("flip", "overwrite")  # a cut or appended junk is a torn tail
            return
        assert [lsn for lsn, _ in got] == list(range(1, len(got) + 1))
        assert [r for _, r in got] == ORIGINAL[: len(got)]
        if kind == "append":
            assert len(got) == 30


# ------------------------------------------------------------------ model-based
class WalModel(RuleBasedStateMachine):
    """Random appends, waits, truncations, closes and reopens match a list model."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="walmodel_"))
        self.model: list[bytes] = []  # model[i] is LSN i + 1
        self.truncated = 0  # highest truncate_before argument
        self.wal = WriteAheadLog(self.dir, segment_bytes=1024, group_commit_ms=0.2)

    @rule(data=st.binary(max_size=200))
    def append(self, data: bytes) -> None:
        assert self.wal.append(data) == len(self.model) + 1
        self.model.append(data)

    @rule(batch=st.lists(st.binary(max_size=80), max_size=12))
    def append_many(self, batch: list[bytes]) -> None:
        n = len(self.model)
        assert self.wal.append_many(batch) == range(n + 1, n + 1 + len(batch))
        self.model.extend(batch)

    @precondition(lambda self: self.model)
    @rule()
    def wait(self) -> None:
        self.wal.wait_durable(len(self.model))
        assert self.wal.durable_lsn == len(self.model)

    @rule(policy=st.sampled_from(POLICIES), seg=st.sampled_from([1024, 4096, 1 << 20]))
    def reopen(self, policy: str, seg: int) -> None:
        self.wal.close()
        self.wal.close()  # idempotent
        with pytest.raises(StorageError, match="closed"):
            self.wal.append(b"late")
        self.wal = WriteAheadLog(self.dir, sync=policy, segment_bytes=seg, level=seg % 5 - 2)
        assert self.wal.last_lsn == self.wal.durable_lsn == len(self.model)

    @rule(data=st.data())
    def truncate(self, data) -> None:
        k = data.draw(st.integers(0, len(self.model) + 1))
        self.wal.truncate_before(k)
        self.truncated = max(self.truncated, k)

    @rule(data=st.data())
    def replay(self, data) -> None:
        after = data.draw(st.integers(0, len(self.model) + 1))
        if self.model:
            self.wal.wait_durable(len(self.model))
        got = [(lsn, bytes(r)) for lsn, r in self.wal.replay(after)]
        lsns = [lsn for lsn, _ in got]
        want_from = max(after + 1, self.truncated)  # everything from here on is kept
        if want_from <= len(self.model):
            assert lsns and after < lsns[0] <= want_from and lsns[-1] == len(self.model)
        if after >= len(self.model):
            assert got == []
        if lsns:
            assert lsns == list(range(lsns[0], lsns[-1] + 1))  # consecutive
        assert all(self.model[lsn - 1] == r for lsn, r in got)

    @invariant()
    def lsns_consistent(self) -> None:
        assert self.wal.durable_lsn <= self.wal.last_lsn == len(self.model)

    def teardown(self) -> None:
        self.wal.close()
        shutil.rmtree(self.dir, ignore_errors=True)


WalModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_wal_model = WalModel.TestCase


# ------------------------------------------------------------------ waiting, listeners, back-pressure
def test_wait_durable_errors(tmp_path: Path, monkeypatch) -> None:
    gate = threading.Event()
    real_sync = walmod._sync_file
    monkeypatch.setattr(walmod, "_sync_file", lambda fd: (gate.wait(10), real_sync(fd)))
    with WriteAheadLog(tmp_path, sync="always") as wal:
        lsn = wal.append(b"x")
        with pytest.raises(TimeoutError):
            wal.wait_durable(lsn, timeout=0.05)
        assert wal.durable_lsn == 0
        with pytest.raises(UsageError):
            wal.wait_durable(lsn + 1)
        with pytest.raises(UsageError):
            wal.wait_durable(0)
        gate.set()
        wal.wait_durable(lsn, timeout=10)


def test_group_commit_gathers_and_always_does_not_wait(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path / "g", sync="group", group_commit_ms=200) as wal:
        t0 = time.perf_counter()
        for i in range(50):
            wal.append(b"r%d" % i)
        wal.wait_durable(50)
        waited = time.perf_counter() - t0
        assert wal.stats()["commits"] == 1  # one block, one fsync for all 50
        assert waited >= 0.15
    with WriteAheadLog(tmp_path / "a", sync="always", group_commit_ms=200) as wal:
        t0 = time.perf_counter()
        wal.wait_durable(wal.append(b"x"))
        assert time.perf_counter() - t0 < 0.15  # the window applies to "group" only


def test_back_pressure(tmp_path: Path, monkeypatch) -> None:
    gate = threading.Event()
    real_sync = walmod._sync_file
    monkeypatch.setattr(walmod, "_sync_file", lambda fd: (gate.wait(10), real_sync(fd)))
    with WriteAheadLog(tmp_path, sync="always", max_pending_bytes=1000) as wal:
        for _ in range(9):
            wal.append(b"x" * 100)
        with pytest.raises(BackPressureError, match="max_pending_bytes=1000"):
            wal.append(b"y" * 101)
        with pytest.raises(BackPressureError):
            wal.append_many([b"z" * 50] * 3)
        assert wal.last_lsn == 9 and wal.stats()["backpressure_rejections"] == 2
        with pytest.raises(UsageError, match="exceeds the limit"):
            wal.append(b"w" * 1001)
        with pytest.raises(UsageError, match="never fit"):
            wal.append_many([b"w" * 600, b"v" * 600])
        gate.set()
        wal.wait_durable(9)
        assert wal.append(b"y" * 101) == 10  # room again
    assert [len(r) for _, r in replayed(tmp_path)] == [100] * 9 + [101]


def test_listeners(tmp_path: Path, caplog) -> None:
    seen: list[int] = []
    threads: set[str] = set()

    def good(lsn: int) -> None:
        seen.append(lsn)
        threads.add(threading.current_thread().name)

    def bad(lsn: int) -> None:
        raise RuntimeError("listener bug")

    with WriteAheadLog(tmp_path, group_commit_ms=0) as wal:
        wal.add_durable_listener(bad)
        wal.add_durable_listener(good)
        for i in range(20):
            wal.wait_durable(wal.append(b"%d" % i))
        assert wal.stats()["listener_errors"] >= 1
        wal.remove_durable_listener(good)
        wal.wait_durable(wal.append(b"after"))
        with pytest.raises(UsageError):
            wal.remove_durable_listener(good)
        with pytest.raises(UsageError):
            wal.add_durable_listener(42)  # type: ignore[arg-type]
    assert seen == sorted(seen) and seen[-1] == 20 and 21 not in seen
    assert all(t.startswith("vitalcore-wal-write") for t in threads)
    assert "listener bug" in caplog.text


def test_close_or_wait_from_a_listener_is_refused(tmp_path: Path) -> None:
    errors: list[str] = []
    with WriteAheadLog(tmp_path) as wal:

        def reentrant(lsn: int) -> None:
            for call in (wal.close, lambda: wal.wait_durable(wal.append(b"y"))):
                try:
                    call()
                except UsageError as exc:
                    errors.append(str(exc))

        wal.add_durable_listener(reentrant)
        wal.wait_durable(wal.append(b"x"))
        wal.remove_durable_listener(reentrant)
    assert "listener" in errors[0] and "deadlock" in errors[1]


def test_argument_validation(tmp_path: Path) -> None:
    for bad in (
        {"sync": "sometimes"},
        {"group_commit_ms": -1},
        {"group_commit_ms": 5000},
        {"group_commit_ms": "2"},
        {"segment_bytes": 100},
        {"level": 99},
        {"level": 1.5},
        {"max_pending_bytes": 0},
    ):
        with pytest.raises(UsageError):
            WriteAheadLog(tmp_path, **bad)
    with WriteAheadLog(tmp_path) as wal:
        with pytest.raises(UsageError, match="bytes-like"):
            wal.append("text")
        with pytest.raises(UsageError, match="bytes-like"):
            wal.append(5)
        with pytest.raises(UsageError, match="not one record"):
            wal.append_many(b"abc")
        with pytest.raises(UsageError):
            list(wal.replay(-1))
        assert wal.append_many([]) == range(1, 1)
        assert wal.last_lsn == 0


def test_directory_is_locked(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path):
        with pytest.raises(StorageError, match="already open"):
            WriteAheadLog(tmp_path)
    WriteAheadLog(tmp_path).close()  # released on close


def test_repr_and_properties(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "new" / "dir", sync="none")
    assert wal.directory == tmp_path / "new" / "dir" and "open" in repr(wal)
    wal.close()
    assert "closed" in repr(wal)


# ------------------------------------------------------------------ asyncio
@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def runner(coro):
        loop = factory()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    return runner


def test_append_durable(tmp_path: Path, run) -> None:
    recs = records(300)

    async def main(wal: WriteAheadLog) -> tuple[list[int], int]:
        ticks = 0
        stop = False

        async def ticker() -> None:  # proves the loop keeps running while we wait
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.ensure_future(ticker())
        lsns = await asyncio.gather(*(wal.append_durable(r) for r in recs[:200]))
        for lsn in lsns:
            assert wal.durable_lsn >= lsn
        batch = await wal.append_many_durable(recs[200:])
        assert wal.durable_lsn >= batch[-1]
        assert await wal.append_many_durable([]) == range(301, 301)
        stop = True
        await t
        return lsns + list(batch), ticks

    with WriteAheadLog(tmp_path, group_commit_ms=20) as wal:
        lsns, ticks = run(main(wal))
    assert sorted(lsns) == list(range(1, 301))
    assert ticks >= 5  # several group windows of 20 ms passed without blocking the loop
    assert sorted(replayed(tmp_path)) == sorted(zip(lsns, recs, strict=True))


def test_wait_durable_async(tmp_path: Path, run, monkeypatch) -> None:
    gate = threading.Event()
    real_sync = walmod._sync_file
    monkeypatch.setattr(walmod, "_sync_file", lambda fd: (gate.wait(10), real_sync(fd)))

    async def main(wal: WriteAheadLog) -> list[int]:
        done: list[int] = []

        async def waiter(lsn: int) -> None:
            await wal.wait_durable_async(lsn)
            assert wal.durable_lsn >= lsn
            done.append(lsn)

        lsns = wal.append_many([b"a", b"b", b"c"])
        tasks = [asyncio.ensure_future(waiter(n)) for n in (3, 1, 2)]  # out of LSN order
        with pytest.raises(TimeoutError, match="not durable after"):
            await wal.wait_durable_async(lsns[-1], timeout=0.05)
        with pytest.raises(UsageError):
            await wal.wait_durable_async(4)
        assert done == []
        gate.set()
        await asyncio.gather(*tasks)
        await wal.wait_durable_async(2)  # already durable: returns at once
        return done

    with WriteAheadLog(tmp_path, sync="always") as wal:
        assert sorted(run(main(wal))) == [1, 2, 3]


def test_append_durable_cancelled_still_appends(tmp_path: Path, run, monkeypatch) -> None:
    gate = threading.Event()
    real_sync = walmod._sync_file
    monkeypatch.setattr(walmod, "_sync_file", lambda fd: (gate.wait(10), real_sync(fd)))

    async def main(wal: WriteAheadLog) -> None:
        task = asyncio.ensure_future(wal.append_durable(b"cancel me"))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        assert await wal.append_durable(b"next") == 2

    with WriteAheadLog(tmp_path, sync="always") as wal:
        run(main(wal))
    assert replayed(tmp_path) == [(1, b"cancel me"), (2, b"next")]


def test_async_waiters_see_writer_failure(tmp_path: Path, run, monkeypatch) -> None:
    gate = threading.Event()

    def broken(fd, header, body):
        gate.wait(10)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(walmod, "_write_all", broken)

    async def main(wal: WriteAheadLog) -> None:
        lsn = wal.append(b"lost")
        waiting = asyncio.ensure_future(wal.wait_durable_async(lsn))
        appending = asyncio.ensure_future(wal.append_durable(b"lost too"))
        await asyncio.sleep(0.02)
        gate.set()
        for task in (waiting, appending):
            with pytest.raises(StorageError, match="EIO") as info:
                await task
            assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(StorageError, match="EIO"):
            await wal.wait_durable_async(lsn)  # after the failure: at once
        with pytest.raises(StorageError, match="EIO"):
            await wal.append_durable(b"refused")

    wal = WriteAheadLog(tmp_path)
    run(main(wal))
    assert wal.durable_lsn == 0 and "failed" in repr(wal)
    with pytest.raises(StorageError, match="EIO"):
        wal.wait_durable(1)
    with pytest.raises(StorageError, match="EIO"):
        wal.close()
    wal.close()  # idempotent after the failure was reported
    monkeypatch.undo()
    assert replayed(tmp_path) == []


# ------------------------------------------------------------------ real disk failures
@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs of ``size`` at ``path``; skips the test where mounting is impossible."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_is_a_storage_error_and_nothing_false_is_durable(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    rng = np.random.default_rng(5)
    noise = [rng.integers(0, 256, 4000, dtype=np.uint8).tobytes() for _ in range(600)]
    acked: list[int] = []
    with tmpfs(mnt, "1m"):
        wal = WriteAheadLog(mnt / "wal", sync="group", group_commit_ms=0)
        error = None
        for rec in noise:  # 2.4 MB of incompressible records into 1 MB
            try:
                lsn = wal.append(rec)
                wal.wait_durable(lsn)
                acked.append(lsn)
            except StorageError as exc:
                error = exc
                break
        assert error is not None and "ENOSPC" in str(error)
        assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOSPC
        assert wal.durable_lsn == acked[-1]
        with pytest.raises(StorageError, match="ENOSPC"):
            wal.append(b"more")
        with pytest.raises(StorageError):
            wal.close()
        got = replayed(mnt / "wal")  # reopening a full disk works
        assert [lsn for lsn, _ in got] == acked  # every acknowledged record, nothing else
        assert all(r == noise[lsn - 1] for lsn, r in got)


def test_read_only_directory_is_a_storage_error(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "1m"):
        write_log(mnt / "wal", [b"abc"])
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(StorageError, match="EROFS"):
            WriteAheadLog(mnt / "wal")
        with pytest.raises(StorageError, match="EROFS"):
            WriteAheadLog(mnt / "other")


EFBIG_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from vitalcore.errors import StorageError
    from vitalcore.storage import WriteAheadLog
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    wal = WriteAheadLog(sys.argv[1], sync="always", group_commit_ms=0)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    for i in range(1000):
        rec = bytes([i % 251]) * 5 + __import__("os").urandom(400)
        try:
            wal.wait_durable(wal.append(rec))
        except StorageError as exc:
            print("ERROR", exc, flush=True)
            break
        print("ACK", i + 1, rec.hex(), flush=True)
    try:
        wal.close()
    except StorageError:
        print("CLOSE-ERROR", flush=True)
    """
)


def test_file_size_limit_is_a_storage_error(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))  # import what we import
    r = subprocess.run(
        [sys.executable, "-c", EFBIG_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    assert len(errors) == 1 and "EFBIG" in errors[0], r.stdout[-2000:]
    assert lines[-1] == "CLOSE-ERROR"
    acked = [(int(ln.split()[1]), bytes.fromhex(ln.split()[2])) for ln in lines if ln[:3] == "ACK"]
    assert 10 < len(acked) < 60
    assert replayed(tmp_path) == acked  # the partial block was cut, all acks survive
