"""Crash test: SIGKILL a WAL writer mid-stream, recover, continue; no acknowledged frame lost.

A writer subprocess (``wal_crash_writer.py``) streams real wire frames into the log and
prints the LSNs it has seen acknowledged by ``wait_durable``. The test kills it with
SIGKILL at a random moment, reopens the log, replays it and checks that every
acknowledged frame is there exactly once, that every replayed record is byte-identical
to what was appended (no torn record surfaces) and that the frames still decode. The next
cycle's writer appends after its own recovery, so recovery plus continuation is tested.

SIGKILL leaves the page cache intact: this proves process-crash safety of the format and
the recovery. Power-loss safety rests on the fsync discipline (see docs/storage.md).
``VITALCORE_WAL_CRASH_CYCLES`` sets the cycles per policy (default 5).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vitalcore import codec
from vitalcore.storage import WriteAheadLog

HELPER = Path(__file__).with_name("wal_crash_writer.py")
CYCLES = int(os.environ.get("VITALCORE_WAL_CRASH_CYCLES", "5"))

_spec = importlib.util.spec_from_file_location("wal_crash_writer", HELPER)
assert _spec and _spec.loader
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)


class Run:
    """One writer process: its output lines, read by a thread so the pipe never fills."""

    def __init__(self, directory: Path, policy: str, first_id: int, seed: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))  # import what we import
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(directory), policy, str(first_id), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.acked = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # the kill cut the last line short: it acknowledges nothing
            self.lines.append(line[:-1])
            if line.startswith("ACK"):
                self.acked.set()

    def kill_after_first_ack(self, delay: float) -> None:
        if not self.acked.wait(60):
            self.proc.kill()
            raise AssertionError(f"writer never acknowledged: {self.stderr()}")
        time.sleep(delay)
        assert self.proc.poll() is None, f"writer exited by itself: {self.stderr()}"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        self._reader.join(30)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]


def check_log(directory: Path, runs: list[tuple[int, int]], acked_lsn: int) -> int:
    """Replay, check against the writers' record streams; return the last LSN.

    ``runs`` holds ``(lsn before the run's first record, run's first record id)``.
    """
    with WriteAheadLog(directory) as wal:
        replay = [(lsn, bytes(rec)) for lsn, rec in wal.replay()]
        last = wal.last_lsn
    lsns = [lsn for lsn, _ in replay]
    assert lsns == list(range(1, last + 1)), "LSNs must be consecutive from 1"
    assert last >= acked_lsn, f"acknowledged up to LSN {acked_lsn}, log ends at {last}"
    ids = []
    for lsn, rec in replay:
        base, first_id = max(r for r in runs if r[0] < lsn)
        rid = first_id + (lsn - base - 1)
        assert rec == writer.make_record(rid), f"LSN {lsn}: record differs from id {rid}"
        ids.append(rid)
    assert len(set(ids)) == len(ids), "a frame appears twice"
    batch = codec.FrameDecoder().decode(b"".join(rec for _, rec in replay))
    assert batch.n_frames == len(replay) and sum(batch.rejected().values()) == 0
    assert [int(s) for s in batch["frames"]["seq"]] == [i & 0xFFFFFFFF for i in ids]
    return last


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["group", "always"])
def test_sigkill_mid_stream_loses_no_acknowledged_frame(
    tmp_path: Path, policy: str, caplog
) -> None:
    rnd = random.Random(f"wal-crash-{policy}")
    directory = tmp_path / "wal"
    runs: list[tuple[int, int]] = []
    acked_lsn = last = 0
    caplog.set_level(logging.WARNING, logger="vitalcore.storage.wal")
    for cycle in range(CYCLES):
        first_id = (cycle + 1) * 10_000_000  # ids never repeat across runs
        run = Run(directory, policy, first_id, seed=rnd.randrange(1 << 30))
        run.kill_after_first_ack(rnd.uniform(0.0, 0.4))
        ready = [ln for ln in run.lines if ln.startswith("READY")]
        assert len(ready) == 1
        base = int(ready[0].split()[1])
        assert base == last, "the writer must recover exactly what the last check saw"
        runs.append((base, first_id))
        for ln in run.lines:
            if ln.startswith("ACK"):
                lsn, rid = map(int, ln.split()[1:])
                assert rid - first_id == lsn - base - 1  # the writer's own bookkeeping
                acked_lsn = max(acked_lsn, lsn)
        last = check_log(directory, runs, acked_lsn)
        assert last > base, "each cycle appends after recovering"
    # and the log goes on after the last crash, in this process
    with WriteAheadLog(directory, sync=policy) as wal:
        lsn = wal.append(writer.make_record(1))
        wal.wait_durable(lsn)
        assert lsn == last + 1
    runs.append((last, 1))
    assert check_log(directory, runs, lsn) == lsn
    torn = [r for r in caplog.records if "torn block" in r.getMessage()]
    print(f"{policy}: {CYCLES} kills, {last} records, {len(torn)} torn tails cut")
