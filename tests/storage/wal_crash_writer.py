"""Writer subprocess of ``test_wal_crash.py``: streams real frames into a WAL until killed.

Usage::

    python wal_crash_writer.py DIRECTORY POLICY FIRST_ID SEED

Opens (and so recovers) the log in DIRECTORY, prints ``READY <last_lsn>``, then appends
the records ``make_record(FIRST_ID)``, ``make_record(FIRST_ID + 1)``, ... in random
bursts (single appends and ``append_many``), one producer so that record ``FIRST_ID + k``
gets LSN ``last_lsn + 1 + k``. After each ``wait_durable`` it prints ``ACK <lsn> <id>``
(every record up to that LSN is acknowledged) and flushes stdout. It never stops by
itself before ``--max-records``; the parent kills it with SIGKILL.

The parent imports this file to rebuild the exact bytes of any record id.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

from vitalcore import codec
from vitalcore import protocol as P

POOL_SIZE = 3000
_SEQ = struct.Struct("<I")
_pool: list[bytes] = []


def _build_pool() -> list[bytes]:
    """3000 distinct real frames: ECG and pleth (DELTA8) and numerics of 30 devices."""
    rng = np.random.default_rng(2024)
    frames = []
    t = np.arange(250) / 250
    for k in range(POOL_SIZE):
        dev = 1 + k % 30
        ts = P.TS_MIN_US + 10**15 + k * 10**6
        kind = k % 3
        if kind == 0:  # ECG-like: a QRS spike on wander and noise, µV / 2.5
            x = 400 * np.exp(-0.5 * ((t - rng.uniform(0.2, 0.8)) / 0.01) ** 2)
            x += 30 * np.sin(2 * np.pi * 0.3 * t + k) + rng.normal(0, 4, 250)
            frames.append(
                codec.encode_waveform(P.FrameType.ECG, dev, 0, ts, 1, x.astype(np.int16), 250, 2.5)
            )
        elif kind == 1:  # pleth-like pulse
            x = 2000 + 600 * np.sin(2 * np.pi * rng.uniform(1, 2) * t[:100] * 2.5) ** 2
            frames.append(
                codec.encode_waveform(
                    P.FrameType.PLETH, dev, 0, ts, 1, x.astype(np.int16), 100, 1.0
                )
            )
        else:
            frames.append(
                codec.encode_numerics(
                    dev,
                    0,
                    ts,
                    [(P.NumericCode.HR, float(rng.integers(50, 120))), (P.NumericCode.SPO2, 97.0)],
                )
            )
    return frames


def make_record(record_id: int) -> bytes:
    """The frame stored for ``record_id``: a pool frame with seq = id, CRC recomputed."""
    if not _pool:
        _pool.extend(_build_pool())
    frame = bytearray(_pool[record_id % POOL_SIZE])
    _SEQ.pack_into(frame, 16, record_id & 0xFFFFFFFF)
    _SEQ.pack_into(frame, len(frame) - 4, codec.crc32c(memoryview(frame)[:-4]))
    return bytes(frame)


def main(argv: list[str]) -> int:
    from vitalcore.storage import WriteAheadLog

    directory, policy, first_id, seed = argv[0], argv[1], int(argv[2]), int(argv[3])
    max_records = 2_000_000
    rng = np.random.default_rng(seed)
    make_record(0)  # build the pool before opening the log
    wal = WriteAheadLog(directory, sync=policy, segment_bytes=256 << 10, group_commit_ms=1.0)
    print("READY", wal.last_lsn, flush=True)
    next_id = first_id
    while next_id - first_id < max_records:
        n = int(rng.integers(1, 200))
        recs = [make_record(i) for i in range(next_id, next_id + n)]
        if rng.random() < 0.5:
            last = wal.append_many(recs)[-1]
        else:
            for r in recs:
                last = wal.append(r)
        next_id += n
        if rng.random() < 0.7:  # sometimes keep appending before waiting
            wal.wait_durable(last)
            sys.stdout.write(f"ACK {last} {next_id - 1}\n")  # one write: a kill cuts no field
            sys.stdout.flush()
    wal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
