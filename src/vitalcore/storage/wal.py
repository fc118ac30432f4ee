"""Write-ahead log: an append-only, crash-safe log of the accepted frames' raw bytes.

Ingest appends each accepted frame here and acknowledges it to the device (MQTT PUBACK)
only once the log reports it durable, so an acknowledged frame survives a crash of the
process or, under the ``"always"`` and ``"group"`` policies, of the machine.

Pipeline (two background threads, so compression and disk syncs overlap)::

    append() --> queue --[compressor thread]--> commit block --[writer thread]--> segment file
                         gathers records,        (zstd body)     write, fsync per policy,
                         frames + compresses                     mark durable, wake waiters

The on-disk format (segment files of CRC-32C-checked, zstd-compressed commit blocks) is
specified in ``docs/storage.md``, section "Write-ahead log"; this module is the only
writer and reader of it.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import functools
import heapq
import itertools
import logging
import os
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import zstandard

from ..codec import crc32c as _crc32c
from ..errors import BackPressureError, StorageError, UsageError
from ..protocol import MAX_FRAME_SIZE
from .fsync import sync_fd

__all__ = [
    "WriteAheadLog",
    "SyncPolicy",
    "BLOCK_MAGIC",
    "FORMAT_VERSION",
    "BLOCK_HEADER_SIZE",
    "MAX_RECORD_BYTES",
    "segment_name",
]

log = logging.getLogger(__name__)

#: First four bytes of every commit block.
BLOCK_MAGIC = b"VCWL"
#: Version of the block format written by this module (header byte 4).
FORMAT_VERSION = 1
#: Body codecs (header byte 5).
CODEC_STORED = 0  #: body stored as is (zstd would not have made it smaller)
CODEC_ZSTD = 1  #: body is one zstd frame
#: Block header: magic, version u8, codec u8, reserved u16, first LSN u64, record count u32,
#: raw body length u32, stored body length u32, then CRC-32C u32 (over bytes 0..27 + body).
_HEAD = struct.Struct("<4sBBHQIII")
_U32 = struct.Struct("<I")
BLOCK_HEADER_SIZE = _HEAD.size + 4
#: Largest record accepted by :meth:`WriteAheadLog.append` (a wire frame is at most ~16 KiB).
MAX_RECORD_BYTES = 16 << 20
#: A commit block takes queued records until their raw size reaches this cap. Bigger blocks
#: compress a little better and need fewer fsyncs; 4 MiB keeps a block's zstd time ~10 ms.
_BLOCK_CAP = 4 << 20
#: Commit blocks compressed but not yet written (bounds memory between the two threads).
_BLOCKS_IN_FLIGHT = 2
#: A durable listener slower than this is reported: it delays every later commit.
_SLOW_LISTENER_S = 0.05
_NEVER = 1 << 62
_AsyncWaiter = tuple[int, int, asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_SEGMENT_RE = re.compile(r"wal-(\d{20})\.seg")
_LOCK_NAME = "wal.lock"


class SyncPolicy(enum.StrEnum):
    """When a committed block counts as durable.

    Every policy writes whole commit blocks to the segment file with ``write(2)``; they
    differ in whether and when the file is synced before the block's records are reported
    durable (``wait_durable`` returns, ``append_durable`` resolves, listeners are called).
    """

    #: The compressor starts a block as soon as any record is queued (no gathering delay)
    #: and the writer ``fdatasync``s every block before reporting it durable. Survives a
    #: power loss. Under load a block still holds every record queued while the previous
    #: block was being synced, so the fsync rate is bounded by the disk, not by the appends.
    ALWAYS = "always"
    #: Group commit: a block gathers every record appended within ``group_commit_ms`` of
    #: the first one queued (or until the block cap, 4 MiB, is reached), then is written
    #: and ``fdatasync``ed once before all its records are reported durable. Survives a
    #: power loss; trades up to ``group_commit_ms`` of latency for far fewer fsyncs.
    GROUP = "group"
    #: Blocks are written to the operating system (no gathering delay, no fsync per block)
    #: and reported durable once ``write(2)`` returned. Survives a crash of the process,
    #: not of the machine or a power loss. The finished segment is synced at rollover and
    #: the active one at ``close()``, so a power loss can only damage the last segment
    #: (possibly so that recovery refuses it: a lost block followed by a written one).
    NONE = "none"


def segment_name(first_lsn: int) -> str:
    """File name of the segment whose first record has LSN ``first_lsn``."""
    return f"wal-{first_lsn:020d}.seg"


class WriteAheadLog:
    """Append-only log of byte records (the accepted frames' raw bytes), crash-safe.

    Records get log sequence numbers (LSNs) 1, 2, 3, ... in append order. Opening a
    directory that already holds a log recovers it (see Notes) and continues
    after its last valid record. The log is thread-safe: any number of threads (and
    asyncio loops) may append and wait concurrently.

    Parameters
    ----------
    directory : str or os.PathLike
        Directory of the log (created if missing). One ``WriteAheadLog`` at a time may
        use it (an exclusive ``flock`` on ``wal.lock`` there, also across processes).
    sync : {"always", "group", "none"}
        Durability policy, see :class:`SyncPolicy`.
    group_commit_ms : float
        Gathering window of the ``"group"`` policy in ms (0 to 1000); ignored otherwise.
    segment_bytes : int
        Segment rollover size in bytes (>= 1024). A block never spans segments: a new
        segment starts when the next block would make the current one exceed this size
        (a single block larger than it gets a segment of its own).
    level : int
        zstd compression level of the block bodies (-7 to 22). The default, -1, was chosen
        by measurement (``benchmarks/bench_storage.py``): on DELTA8 frames it compresses
        1.1:1 at ~500 MB per CPU-second, where level 1 reaches 1.5:1 at ~320 MB per
        CPU-second and caps the log below 200 MB/s per core. Use 1 or more where disk
        space or bandwidth, not CPU, is short.
    max_pending_bytes : int
        Bound, in record bytes, on what was appended but not yet committed (written and,
        under the policy, synced). An append that would exceed it raises
        :class:`~vitalcore.errors.BackPressureError` and appends nothing.

    Raises
    ------
    UsageError
        An argument is out of range.
    StorageError
        The directory cannot be created, locked or read, or the existing log is corrupt
        anywhere but in a torn tail of its last segment.

    Notes
    -----
    Guarantees: a record reported durable is returned by every later :meth:`replay`,
    byte-identical and exactly once, after any crash allowed by the policy. A record
    not (yet) reported durable may or may not survive a crash. LSNs of durable records
    are never reused; the LSNs of records lost in a crash before they became durable
    are assigned again after the restart (nobody was told they were durable).

    Recovery on open scans every segment and checks every block's CRC-32C. A bad or
    incomplete block in the last segment with no valid block after it is a torn write:
    the segment is truncated to the end of the last good block and a warning logged
    with the byte count cut. Any other damage (a bad block followed by a good one, a
    bad block in an older segment, a gap in the LSNs) raises :class:`StorageError`:
    the log never skips data silently.

    After an I/O error in a background thread (disk full, read-only file system,
    ``EIO``) the log is *failed*: waiters of records not yet durable and every later
    append get :class:`StorageError` with the cause; nothing more is reported durable.
    An fsync is never retried after it failed (the kernel may have dropped the dirty
    pages): reopen the directory, which recovers from what is really on disk.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        sync: str = "group",
        group_commit_ms: float = 2.0,
        segment_bytes: int = 64 << 20,
        level: int = -1,
        max_pending_bytes: int = 256 << 20,
    ) -> None:
        try:
            self._sync = SyncPolicy(sync)
        except ValueError:
            raise UsageError(
                f"sync must be one of {[p.value for p in SyncPolicy]}, got {sync!r}"
            ) from None
        if not isinstance(group_commit_ms, int | float) or not 0 <= group_commit_ms <= 1000:
            raise UsageError(f"group_commit_ms must be in 0..1000, got {group_commit_ms}")
        if not isinstance(segment_bytes, int) or segment_bytes < 1024:
            raise UsageError(f"segment_bytes must be an int >= 1024, got {segment_bytes!r}")
        if not isinstance(level, int) or not -7 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise UsageError(
                f"level must be an int in -7..{zstandard.MAX_COMPRESSION_LEVEL}, got {level!r}"
            )
        if not isinstance(max_pending_bytes, int) or max_pending_bytes < 1:
            raise UsageError(f"max_pending_bytes must be an int >= 1, got {max_pending_bytes!r}")

        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._max_pending = max_pending_bytes
        self._max_record = min(MAX_RECORD_BYTES, max_pending_bytes)
        self._block_cap = min(_BLOCK_CAP, segment_bytes)
        self._gather_s = float(group_commit_ms) / 1000.0 if self._sync is SyncPolicy.GROUP else 0.0
        self._level = level
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=False)

        self._lock = threading.Lock()
        self._work_cv = threading.Condition(self._lock)  # compressor waits for records
        self._blocks_cv = threading.Condition(self._lock)  # compressor <-> writer handoff
        self._durable_cv = threading.Condition(self._lock)  # wait_durable callers

        self._lock_fd = self._dir_fd = self._fd = -1
        try:
            self._open_directory()
            segments, next_lsn, self._cut_on_open = _recover(self._dir)
            if not segments:
                segments = [_Segment(next_lsn, self._dir / segment_name(next_lsn), 0)]
                self._fd = _create_segment(segments[0].path, self._dir_fd)
            else:
                self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_CLOEXEC)
                os.lseek(self._fd, segments[-1].size, os.SEEK_SET)
                if self._sync is not SyncPolicy.NONE:
                    # The records recovered are reported durable at once, but after a
                    # process crash the last blocks may sit in the page cache only
                    # (written, not yet synced): sync them before anyone relies on them.
                    _sync_file(self._fd)
        except OSError as exc:
            self._close_fds()
            raise StorageError(
                f"cannot open the write-ahead log in {self._dir}: {_describe(exc)}"
            ) from exc
        except BaseException:
            self._close_fds()
            raise
        self._segments: list[_Segment] = segments
        self._active_size = segments[-1].size

        # State shared under self._lock.
        self._queue: list[bytes] = []
        self._queued_bytes = 0  # record bytes in _queue
        self._inflight_bytes = 0  # record bytes taken by the compressor, not yet committed
        self._first_queued_t = 0.0  # monotonic time the oldest queued record was appended
        self._last_lsn = next_lsn - 1  # last LSN handed out
        self._taken_lsn = next_lsn - 1  # last LSN taken into a block
        self._durable_lsn = next_lsn - 1
        self._blocks: deque[_Block | None] = deque()
        # Compressor-private: records taken from the queue but not yet put in a block.
        self._backlog: list[bytes] = []
        self._backlog_first = self._backlog_pos = self._backlog_step = 0
        # Heap of (LSN, tie-breaker, loop, future) resolved when the LSN becomes durable.
        self._async_waiters: list[_AsyncWaiter] = []
        self._waiter_ids = itertools.count()
        self._listeners: tuple[Callable[[int], Any], ...] = ()
        # Queued bytes at which an append must wake the compressor: 0 while it waits for
        # a first record, the block cap while it gathers a group, _NEVER while it works.
        self._wake_at = _NEVER
        self._refusing = False  # closing or failed: appends are refused
        self._closed = False
        self._error: tuple[str, BaseException] | None = None
        self._stats = dict.fromkeys(
            (
                "records",
                "bytes_in",
                "raw_bytes",
                "bytes_written",
                "commits",
                "fsyncs",
                "dir_fsyncs",
                "rollovers",
                "backpressure_rejections",
                "listener_errors",
            ),
            0,
        )

        self._compressor = threading.Thread(
            target=self._compress_loop,
            name=f"vitalcore-wal-compress[{self._dir.name}]",
            daemon=True,
        )
        self._writer = threading.Thread(
            target=self._write_loop, name=f"vitalcore-wal-write[{self._dir.name}]", daemon=True
        )
        self._compressor.start()
        self._writer.start()

    # ------------------------------------------------------------------ public API
    @property
    def directory(self) -> Path:
        """Directory of the log."""
        return self._dir

    @property
    def sync(self) -> SyncPolicy:
        """Durability policy."""
        return self._sync

    @property
    def durable_lsn(self) -> int:
        """Highest LSN reported durable (every LSN up to it is durable); 0 if none."""
        return self._durable_lsn

    @property
    def failed(self) -> bool:
        """True once an I/O error put the log in the failed state (see Notes)."""
        return self._error is not None

    @property
    def max_record_bytes(self) -> int:
        """Largest record :meth:`append` accepts, bytes."""
        return self._max_record

    @property
    def last_lsn(self) -> int:
        """Highest LSN handed out by :meth:`append`; 0 if the log has never held a record."""
        return self._last_lsn

    def append(self, data: Any) -> int:
        """Queue one record and return its LSN, without waiting for the disk.

        Parameters
        ----------
        data : bytes-like
            The record: any object with the buffer protocol (bytes are kept as they are,
            anything else is copied once, so the caller may reuse its buffer). At most
            ``min(MAX_RECORD_BYTES, max_pending_bytes)`` bytes; may be empty.

        Returns
        -------
        int
            The record's LSN: one more than the previous record's, across restarts.

        Raises
        ------
        BackPressureError
            Queued plus in-flight record bytes would exceed ``max_pending_bytes``.
            Nothing was appended; retry once earlier records are durable.
        StorageError
            The log is failed or closed.
        UsageError
            ``data`` is not a bytes-like object or is too large.
        """
        if type(data) is not bytes:
            data = _as_record(data)
        n = len(data)
        if n > self._max_record:
            raise self._too_large(n)
        with self._lock:
            if self._refusing:
                raise self._refusal()
            queued = self._queued_bytes + n
            if queued + self._inflight_bytes > self._max_pending:
                raise self._backpressure(n)
            queue = self._queue
            if not queue:
                self._first_queued_t = time.monotonic()
            queue.append(data)
            self._queued_bytes = queued
            lsn = self._last_lsn = self._last_lsn + 1
            if queued >= self._wake_at:
                self._wake_at = _NEVER
                self._work_cv.notify()
        return lsn

    def append_many(self, records: Iterable[Any]) -> range:
        """Queue several records at once (one lock round trip); return their LSNs.

        Much cheaper per record than :meth:`append` when the caller has a batch at hand
        (e.g. every frame decoded from one network read). All or nothing: on an exception
        no record of the batch was appended.

        Returns
        -------
        range
            The consecutive LSNs of ``records`` in order (empty if ``records`` is).

        Raises
        ------
        BackPressureError, StorageError, UsageError
            As :meth:`append`, for the batch as a whole (a batch larger than
            ``max_pending_bytes`` is a :class:`UsageError`).
        """
        return self._enqueue_many(records, None)

    async def append_durable(self, data: Any) -> int:
        """Append a record and wait, without blocking the event loop, until it is durable.

        The writer thread resolves the future through ``loop.call_soon_threadsafe``, one
        call per loop per commit. Cancelling the awaiting task stops the wait only: the
        record stays appended and becomes durable as usual.

        Returns
        -------
        int
            The record's LSN.

        Raises
        ------
        BackPressureError, StorageError, UsageError
            As :meth:`append` (nothing appended); :class:`StorageError` also if the log
            fails before the record is durable.
        """
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        lsns = self._enqueue_many((data,), (loop, fut))
        await fut
        return lsns[0]

    async def append_many_durable(self, records: Iterable[Any]) -> range:
        """:meth:`append_many`, then wait for the batch as :meth:`append_durable` does."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        lsns = self._enqueue_many(records, (loop, fut))
        if not lsns:
            fut.cancel()
            return lsns
        await fut
        return lsns

    def wait_durable(self, lsn: int, timeout: float | None = None) -> None:
        """Block until record ``lsn`` (and so every record before it) is durable.

        Parameters
        ----------
        lsn : int
            An LSN returned by :meth:`append` (or recovered from disk).
        timeout : float, optional
            Seconds to wait at most; ``None`` waits as long as it takes.

        Raises
        ------
        StorageError
            The log failed before the record became durable.
        TimeoutError
            ``timeout`` elapsed first (the record may still become durable later).
        UsageError
            ``lsn`` was never handed out.
        """
        if 0 < lsn <= self._durable_lsn:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        if threading.current_thread() is self._writer:
            raise UsageError("wait_durable() on the writer thread (from a listener) would deadlock")
        with self._lock:
            if not 0 < lsn <= self._last_lsn:
                raise UsageError(f"LSN {lsn} was never appended (last LSN is {self._last_lsn})")
            while self._durable_lsn < lsn:
                if self._error is not None:
                    raise self._failure()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"LSN {lsn} not durable after {timeout} s "
                        f"(durable up to {self._durable_lsn})"
                    )
                self._durable_cv.wait(remaining)

    async def wait_durable_async(self, lsn: int, timeout: float | None = None) -> None:
        """:meth:`wait_durable` for asyncio: await, without blocking the event loop.

        For records appended with :meth:`append` or :meth:`append_many` (the
        ``*_durable`` methods wait by themselves). Cancelling the wait is harmless.

        Raises
        ------
        StorageError, TimeoutError, UsageError
            As :meth:`wait_durable`.
        """
        if 0 < lsn <= self._durable_lsn:
            return
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if not 0 < lsn <= self._last_lsn:
                raise UsageError(f"LSN {lsn} was never appended (last LSN is {self._last_lsn})")
            if self._durable_lsn >= lsn:
                return
            if self._error is not None:
                raise self._failure()
            heapq.heappush(self._async_waiters, (lsn, next(self._waiter_ids), loop, fut))
        if timeout is None:
            await fut
        else:
            try:
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"LSN {lsn} not durable after {timeout} s (durable up to {self._durable_lsn})"
                ) from None

    def add_durable_listener(self, callback: Callable[[int], Any]) -> None:
        """Call ``callback(durable_lsn)`` on the writer thread after each commit.

        Meant for batch acknowledgement: the callback should only hand the LSN over
        (e.g. ``loop.call_soon_threadsafe``), because it delays every later commit. Its
        exceptions are logged and counted (``stats()["listener_errors"]``), never raised;
        calls slower than 50 ms are logged as warnings.
        """
        if not callable(callback):
            raise UsageError(f"callback must be callable, got {callback!r}")
        with self._lock:
            self._listeners = (*self._listeners, callback)

    def remove_durable_listener(self, callback: Callable[[int], Any]) -> None:
        """Stop calling ``callback``; :class:`UsageError` if it was not added."""
        with self._lock:
            if callback not in self._listeners:
                raise UsageError(f"not a durable listener of this log: {callback!r}")
            i = self._listeners.index(callback)
            self._listeners = self._listeners[:i] + self._listeners[i + 1 :]

    def replay(self, after_lsn: int = 0) -> Iterator[tuple[int, memoryview]]:
        """Iterate over the durable records with LSN > ``after_lsn``, in LSN order.

        The set of records is fixed when ``replay`` is called: those durable at that
        moment. Each record is a read-only ``memoryview`` into its decompressed block
        (valid as long as it is referenced). Every block read is CRC-checked again.
        Segments removed by a concurrent :meth:`truncate_before` before the iterator
        reaches them raise :class:`StorageError`.

        Raises
        ------
        StorageError
            A block is corrupt or a segment is missing or shorter than written.
        UsageError
            ``after_lsn`` is not an int >= 0.
        """
        if not isinstance(after_lsn, int) or after_lsn < 0:
            raise UsageError(f"after_lsn must be an int >= 0, got {after_lsn!r}")
        with self._lock:
            snapshot = [(s.first_lsn, s.path, s.size) for s in self._segments]
            upto = self._durable_lsn
        return _replay(snapshot, after_lsn, upto)

    def truncate_before(self, lsn: int) -> int:
        """Delete the segments all of whose records have LSN < ``lsn``.

        Called after a checkpoint made every record before ``lsn`` redundant. Only whole
        segments are deleted, never the one being written, so records below ``lsn`` may
        remain (and are still replayed). The directory is fsynced afterwards.

        Returns
        -------
        int
            Number of segment files removed.

        Raises
        ------
        UsageError
            ``lsn`` is beyond ``last_lsn + 1``.
        StorageError
            A segment could not be deleted (the ones before it were).
        """
        if not isinstance(lsn, int) or lsn < 0:
            raise UsageError(f"lsn must be an int >= 0, got {lsn!r}")
        with self._lock:
            if lsn > self._last_lsn + 1:
                raise UsageError(f"lsn {lsn} is beyond the last LSN + 1 ({self._last_lsn + 1})")
            victims = []
            while len(self._segments) > 1 and self._segments[1].first_lsn <= lsn:
                victims.append(self._segments.pop(0))
        if not victims:
            return 0
        try:
            for seg in victims:
                os.unlink(seg.path)
            sync_fd(self._dir_fd)
        except OSError as exc:
            raise StorageError(
                f"cannot delete write-ahead log segment {seg.path}: {_describe(exc)}"
            ) from exc
        with self._lock:
            self._stats["dir_fsyncs"] += 1
        return len(victims)

    def stats(self) -> dict[str, Any]:
        """Counters since this object opened the log.

        ``records``/``bytes_in``: records and record bytes committed; ``raw_bytes``: their
        block bodies before compression (records + 4-byte length prefixes);
        ``bytes_written``: bytes written to segment files (headers + stored bodies);
        ``compression_ratio``: ``bytes_in / bytes_written``; ``commits``: blocks written;
        ``fsyncs``: syncs of segment files; ``dir_fsyncs``: syncs of the directory;
        ``segments``: segment files now; ``pending_bytes``: record bytes appended but
        not committed; ``truncated_on_open``: bytes cut from a torn tail at open.
        """
        with self._lock:
            s: dict[str, Any] = dict(self._stats)
            s["segments"] = len(self._segments)
            s["pending_bytes"] = self._queued_bytes + self._inflight_bytes
            s["durable_lsn"] = self._durable_lsn
            s["last_lsn"] = self._last_lsn
            s["failed"] = self._error[0] if self._error else None
        s["compression_ratio"] = s["bytes_in"] / s["bytes_written"] if s["bytes_written"] else None
        s["truncated_on_open"] = self._cut_on_open
        return s

    def close(self) -> None:
        """Commit everything appended, sync it, stop the threads, release the directory.

        Idempotent. Later appends raise :class:`StorageError`.

        Raises
        ------
        StorageError
            The log is failed (records appended after the failure were not written).
        UsageError
            Called from a durable listener (on the writer thread).
        """
        if threading.current_thread() in (self._compressor, self._writer):
            raise UsageError("close() cannot be called from a durable listener")
        with self._lock:
            if self._closed:
                return
            self._refusing = True
            self._work_cv.notify_all()
        self._compressor.join()
        self._writer.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._close_fds()
        if self._error is not None:
            raise self._failure()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except StorageError:
            pass  # the failure already propagates (or the caller's own exception does)

    def __repr__(self) -> str:
        state = "failed" if self._error else "closed" if self._closed else "open"
        return (
            f"<WriteAheadLog {str(self._dir)!r} sync={self._sync.value} {state} "
            f"durable_lsn={self._durable_lsn} last_lsn={self._last_lsn}>"
        )

    # ------------------------------------------------------------------ producers
    def _enqueue_many(
        self,
        records: Iterable[Any],
        waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None,
    ) -> range:
        if isinstance(records, bytes | bytearray | memoryview | str):
            raise UsageError("append_many takes an iterable of records, not one record")
        batch = [r if type(r) is bytes else _as_record(r) for r in records]
        n = sum(map(len, batch))
        if batch and (biggest := max(map(len, batch))) > self._max_record:
            raise self._too_large(biggest)
        if n > self._max_pending:
            raise UsageError(
                f"a batch of {n} bytes can never fit under max_pending_bytes={self._max_pending}"
            )
        with self._lock:
            if self._refusing:
                raise self._refusal()
            first = self._last_lsn + 1
            if not batch:
                return range(first, first)
            queued = self._queued_bytes + n
            if queued + self._inflight_bytes > self._max_pending:
                raise self._backpressure(n)
            queue = self._queue
            if not queue:
                self._first_queued_t = time.monotonic()
            queue.extend(batch)
            self._queued_bytes = queued
            last = self._last_lsn = self._last_lsn + len(batch)
            if waiter is not None:
                heapq.heappush(self._async_waiters, (last, next(self._waiter_ids), *waiter))
            if queued >= self._wake_at:
                self._wake_at = _NEVER
                self._work_cv.notify()
        return range(first, last + 1)

    def _too_large(self, n: int) -> UsageError:
        return UsageError(f"record of {n} bytes exceeds the limit of {self._max_record} bytes")

    def _refusal(self) -> StorageError:
        """Why appends are refused (called under the lock)."""
        if self._error is not None:
            return self._failure()
        return StorageError(f"write-ahead log {self._dir} is closed")

    def _backpressure(self, n: int) -> BackPressureError:
        """Count and describe a refused append (called under the lock)."""
        self._stats["backpressure_rejections"] += 1
        pending = self._queued_bytes + self._inflight_bytes
        return BackPressureError(
            f"write-ahead log {self._dir}: {pending} bytes pending, appending {n} more would "
            f"exceed max_pending_bytes={self._max_pending}; retry once earlier records are durable"
        )

    # ------------------------------------------------------------------ compressor thread
    def _compress_loop(self) -> None:
        try:
            while (taken := self._take()) is not None:
                block = self._build(*taken)
                del taken
                with self._lock:
                    while len(self._blocks) >= _BLOCKS_IN_FLIGHT and self._error is None:
                        self._blocks_cv.wait()
                    if self._error is not None:
                        return
                    self._blocks.append(block)
                    self._blocks_cv.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported to every waiter
            self._fail(exc, "compressor")
        finally:
            with self._lock:
                self._blocks.append(None)  # tells the writer to finish
                self._blocks_cv.notify_all()

    def _take(self) -> tuple[int, list[bytes], int] | None:
        """Wait for records and take the next block's worth; None when closing and drained.

        When more than a block is queued, the compressor takes the whole queue into its
        private backlog (one swap under the lock) and slices blocks off it without the
        lock: no per-record work and no list shifting while producers wait.
        """
        if self._backlog:
            return None if self._error is not None else self._slice_backlog()
        with self._lock:
            while not self._queue:
                if self._refusing:
                    return None
                self._wake_at = 0
                self._work_cv.wait()
            if self._gather_s:
                deadline = self._first_queued_t + self._gather_s
                while self._queued_bytes < self._block_cap and not self._refusing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake_at = self._block_cap
                    self._work_cv.wait(remaining)
            self._wake_at = _NEVER
            if self._error is not None:
                return None
            taken, nbytes = self._queue, self._queued_bytes
            self._queue = []
            self._queued_bytes = 0
            self._inflight_bytes += nbytes
            first = self._taken_lsn + 1
            self._taken_lsn += len(taken)
        if nbytes <= self._block_cap:
            return first, taken, nbytes
        self._backlog = taken
        self._backlog_first = first
        self._backlog_pos = 0
        self._backlog_step = max(1, int(len(taken) * self._block_cap / nbytes))
        return self._slice_backlog()

    def _slice_backlog(self) -> tuple[int, list[bytes], int]:
        """The next ~block-cap records of the backlog (by their mean size)."""
        pos = self._backlog_pos
        end = pos + self._backlog_step
        taken = self._backlog[pos:end]
        self._backlog[pos:end] = [None] * len(taken)  # type: ignore[list-item]  # free early
        if end >= len(self._backlog):
            self._backlog = []
        self._backlog_pos = end
        return self._backlog_first + pos, taken, sum(map(len, taken))

    def _build(self, first: int, records: list[bytes], nbytes: int) -> _Block:
        """Frame ``records`` (u32 length + bytes each), compress, add the header."""
        n = len(records)
        parts: list[bytes | None] = [None] * (2 * n)
        try:  # length prefixes of wire-frame sizes are shared objects: ~40 % less framing time
            parts[0::2] = map(_length_prefixes().__getitem__, map(len, records))
        except IndexError:  # a record longer than a wire frame
            parts[0::2] = map(_U32.pack, map(len, records))
        parts[1::2] = records
        raw = b"".join(parts)  # type: ignore[arg-type]
        del parts
        body = self._cctx.compress(raw)
        codec = CODEC_ZSTD
        if len(body) >= len(raw):
            body, codec = raw, CODEC_STORED
        return _Block(
            first, n, nbytes, len(raw), _block_header(first, n, len(raw), codec, body), body
        )

    # ------------------------------------------------------------------ writer thread
    def _write_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._blocks:
                        self._blocks_cv.wait()
                    block = self._blocks.popleft()
                    self._blocks_cv.notify_all()
                if block is None or self._error is not None:
                    break
                self._commit(block)
            if self._error is None and self._sync is SyncPolicy.NONE:
                _sync_file(self._fd)  # close() promises a synced log under every policy
                with self._lock:
                    self._stats["fsyncs"] += 1
        except BaseException as exc:  # noqa: BLE001 - reported to every waiter
            self._fail(exc, "writer")
            try:  # best effort: drop the partial block so the next open finds no torn tail
                os.ftruncate(self._fd, self._active_size)
            except OSError:
                pass

    def _commit(self, block: _Block) -> None:
        size = len(block.header) + len(block.body)
        if self._active_size and self._active_size + size > self._segment_bytes:
            self._rollover(block.first_lsn)
        if _TEST_BYTES_PER_S:
            time.sleep(size / _TEST_BYTES_PER_S)
        _write_all(self._fd, block.header, block.body)
        synced = self._sync is not SyncPolicy.NONE
        if synced:
            _sync_file(self._fd)
        self._active_size += size  # only now: a failure before truncates the block away
        last = block.first_lsn + block.count - 1
        with self._lock:
            self._segments[-1].size = self._active_size
            self._inflight_bytes -= block.nbytes
            st = self._stats
            st["records"] += block.count
            st["bytes_in"] += block.nbytes
            st["raw_bytes"] += block.raw_len
            st["bytes_written"] += size
            st["commits"] += 1
            st["fsyncs"] += synced
            self._durable_lsn = last
            self._durable_cv.notify_all()
            ready = []
            waiters = self._async_waiters
            while waiters and waiters[0][0] <= last:
                ready.append(heapq.heappop(waiters))
            listeners = self._listeners
        if ready:
            _resolve_async(ready, None)
        for callback in listeners:
            self._call_listener(callback, last)

    def _rollover(self, first_lsn: int) -> None:
        old = self._fd
        if self._sync is SyncPolicy.NONE:
            _sync_file(old)  # bound a power loss's damage to the active segment
        path = self._dir / segment_name(first_lsn)
        fd = _create_segment(path, self._dir_fd)
        with self._lock:
            self._fd = fd
            self._active_size = 0
            self._segments.append(_Segment(first_lsn, path, 0))
            self._stats["rollovers"] += 1
            self._stats["dir_fsyncs"] += 1
            self._stats["fsyncs"] += self._sync is SyncPolicy.NONE
        os.close(old)

    def _call_listener(self, callback: Callable[[int], Any], lsn: int) -> None:
        t0 = time.perf_counter()
        try:
            callback(lsn)
        except Exception:
            with self._lock:
                self._stats["listener_errors"] += 1
            log.exception("durable listener %r raised (LSN %d); ignored", callback, lsn)
        dt = time.perf_counter() - t0
        if dt > _SLOW_LISTENER_S:
            log.warning(
                "durable listener %r took %.0f ms: it delays every commit", callback, dt * 1e3
            )

    # ------------------------------------------------------------------ failure
    def _fail(self, exc: BaseException, stage: str) -> None:
        with self._lock:
            if self._error is not None:
                return
            message = (
                f"write-ahead log {self._dir} failed in its {stage} thread ({_describe(exc)}); "
                f"records after LSN {self._durable_lsn} are not durable and the log accepts "
                f"no more appends: fix the cause and reopen the directory"
            )
            self._error = (message, exc)
            self._refusing = True
            self._queue = []
            self._queued_bytes = self._inflight_bytes = 0
            ready, self._async_waiters = self._async_waiters, []
            self._work_cv.notify_all()
            self._blocks_cv.notify_all()
            self._durable_cv.notify_all()
        log.error("%s", message, exc_info=exc)
        if ready:
            _resolve_async(ready, self._failure)

    def _failure(self) -> StorageError:
        """A new StorageError for the stored failure, chained to its cause."""
        assert self._error is not None
        message, cause = self._error
        err = StorageError(message)
        err.__cause__ = cause
        return err

    # ------------------------------------------------------------------ open / close
    def _open_directory(self) -> None:
        created = not self._dir.exists()
        self._dir.mkdir(parents=True, exist_ok=True)
        if created:
            parent = os.open(self._dir.resolve().parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                sync_fd(parent)
            finally:
                os.close(parent)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._lock_fd = os.open(
            self._dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(
                f"write-ahead log {self._dir} is already open (by this or another process)"
            ) from None

    def _close_fds(self) -> None:
        for name in ("_fd", "_dir_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                try:
                    os.close(fd)
                except OSError as exc:
                    log.warning("closing %s of write-ahead log %s: %s", name, self._dir, exc)


# ---------------------------------------------------------------------- helpers
class _Segment:
    __slots__ = ("first_lsn", "path", "size")

    def __init__(self, first_lsn: int, path: Path, size: int) -> None:
        self.first_lsn = first_lsn
        self.path = path
        self.size = size  # bytes of complete blocks (replay reads no further)


class _Block:
    __slots__ = ("first_lsn", "count", "nbytes", "raw_len", "header", "body")

    def __init__(
        self, first_lsn: int, count: int, nbytes: int, raw_len: int, header: bytes, body: bytes
    ) -> None:
        self.first_lsn = first_lsn
        self.count = count
        self.nbytes = nbytes  # record bytes (back-pressure accounting)
        self.raw_len = raw_len
        self.header = header
        self.body = body


class _BlockInfo:
    __slots__ = ("first_lsn", "count", "raw_len", "codec", "body", "end")

    def __init__(
        self, first_lsn: int, count: int, raw_len: int, codec: int, body: memoryview, end: int
    ) -> None:
        self.first_lsn = first_lsn
        self.count = count
        self.raw_len = raw_len
        self.codec = codec
        self.body = body
        self.end = end  # offset just past the block


@functools.cache
def _length_prefixes() -> tuple[bytes, ...]:
    """``_U32.pack(n)`` for every wire-frame size n (built once, ~0.8 MB)."""
    return tuple(map(_U32.pack, range(MAX_FRAME_SIZE + 1)))


def _block_header(first: int, count: int, raw_len: int, codec: int, body: bytes) -> bytes:
    head = _HEAD.pack(BLOCK_MAGIC, FORMAT_VERSION, codec, 0, first, count, raw_len, len(body))
    return head + _U32.pack(_crc32c(body, _crc32c(head)))


def _parse_block(mv: memoryview, off: int, end: int, path: Path) -> _BlockInfo | str:
    """Parse and CRC-check the block at ``off``; a reason string if it is torn or corrupt.

    A block whose CRC matches but whose header is inconsistent or of an unknown version
    raises :class:`StorageError` at once: that is no torn write.
    """
    if end - off < BLOCK_HEADER_SIZE:
        return f"incomplete block header ({end - off} bytes)"
    magic, version, codec, reserved, first, count, raw_len, stored_len = _HEAD.unpack_from(mv, off)
    if magic != BLOCK_MAGIC:
        return f"bad block magic {bytes(magic)!r}"
    body_start = off + BLOCK_HEADER_SIZE
    body_end = body_start + stored_len
    if body_end > end:
        return f"incomplete block (header announces {stored_len} body bytes, {end - body_start} present)"
    (stored_crc,) = _U32.unpack_from(mv, off + _HEAD.size)
    body = mv[body_start:body_end]
    if _crc32c(body, _crc32c(mv[off : off + _HEAD.size])) != stored_crc:
        return "CRC-32C mismatch"
    problem = None
    if version != FORMAT_VERSION:
        problem = f"format version {version} (this reader knows {FORMAT_VERSION}: newer vitalcore?)"
    elif codec not in (CODEC_STORED, CODEC_ZSTD) or reserved:
        problem = f"unknown codec {codec} or reserved bits {reserved:#x}"
    elif (
        first == 0
        or count == 0
        or raw_len < 4 * count
        or (codec == CODEC_STORED and raw_len != stored_len)
    ):
        problem = f"inconsistent header (first LSN {first}, {count} records, raw length {raw_len})"
    if problem:
        raise StorageError(f"write-ahead log segment {path}, block at byte offset {off}: {problem}")
    return _BlockInfo(first, count, raw_len, codec, body, body_end)


def _find_valid_block(data: bytes, start: int, path: Path) -> int | None:
    """Offset of the first CRC-valid block at or after ``start``, if any."""
    mv = memoryview(data)
    pos = data.find(BLOCK_MAGIC, start)
    while pos >= 0:
        try:
            if not isinstance(_parse_block(mv, pos, len(data), path), str):
                return pos
        except StorageError:
            return pos  # CRC-valid but inconsistent: still proof of data after the damage
        pos = data.find(BLOCK_MAGIC, pos + 1)
    return None


def _recover(directory: Path) -> tuple[list[_Segment], int, int]:
    """Validate every segment; truncate a torn tail. Return segments, next LSN, bytes cut."""
    found = []
    for name in os.listdir(directory):
        m = _SEGMENT_RE.fullmatch(name)
        if m:
            found.append((int(m.group(1)), name))
        elif name.startswith("wal-") and name.endswith(".seg"):
            raise StorageError(
                f"unexpected file {directory / name} in the write-ahead log directory"
            )
    found.sort()
    segments: list[_Segment] = []
    next_lsn = 1
    cut = 0
    for i, (first, name) in enumerate(found):
        path = directory / name
        if first == 0:
            raise StorageError(f"invalid segment name {path}: LSNs start at 1")
        if segments and first != next_lsn:
            raise StorageError(
                f"LSN gap in the write-ahead log: {segments[-1].path.name} ends before LSN "
                f"{next_lsn} but the next segment is {name} (segment missing or foreign)"
            )
        size, next_lsn, cut_here = _recover_segment(path, first, is_last=i == len(found) - 1)
        cut += cut_here
        segments.append(_Segment(first, path, size))
    return segments, next_lsn, cut


def _recover_segment(path: Path, first: int, *, is_last: bool) -> tuple[int, int, int]:
    with open(path, "rb") as f:
        data = f.read()
    mv = memoryview(data)
    off, lsn = 0, first
    while off < len(data):
        info = _parse_block(mv, off, len(data), path)
        if isinstance(info, str):
            if not is_last:
                raise StorageError(
                    f"corrupt block in write-ahead log segment {path} at byte offset {off} "
                    f"({info}); it is not the last segment, so this is no torn write: "
                    f"restore it from a backup (the log will not skip data)"
                )
            later = _find_valid_block(data, off + 1, path)
            if later is not None:
                raise StorageError(
                    f"corrupt block in write-ahead log segment {path} at byte offset {off} "
                    f"({info}) followed by a valid block at byte offset {later}: not a torn "
                    f"tail, refusing to drop the data after it"
                )
            cut = len(data) - off
            log.warning(
                "write-ahead log recovery: %s ends in a torn block (%s at byte offset %d); "
                "truncated %d bytes to the last complete block (LSN %d); they were never "
                "reported durable",
                path,
                info,
                off,
                cut,
                lsn - 1,
            )
            del mv, info
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, off)
                _sync_file(fd)
            finally:
                os.close(fd)
            return off, lsn, cut
        if info.first_lsn != lsn:
            raise StorageError(
                f"write-ahead log segment {path}, block at byte offset {off} starts at LSN "
                f"{info.first_lsn}, expected {lsn}"
            )
        lsn += info.count
        off = info.end
    return off, lsn, 0


def _replay(
    segments: list[tuple[int, Path, int]], after: int, upto: int
) -> Iterator[tuple[int, memoryview]]:
    dctx = zstandard.ZstdDecompressor()
    for i, (first, path, size) in enumerate(segments):
        if i + 1 < len(segments) and segments[i + 1][0] <= after + 1:
            continue  # every record of this segment is <= after
        if first > upto:
            return
        data = _read_segment(path, size)
        mv = memoryview(data)
        off = 0
        while off < size:
            info = _parse_block(mv, off, size, path)
            if isinstance(info, str):
                raise StorageError(
                    f"corrupt block in write-ahead log segment {path} at byte offset {off} "
                    f"during replay: {info}"
                )
            off = info.end
            if info.first_lsn + info.count - 1 <= after:
                continue
            if info.first_lsn > upto:
                return
            for lsn, record in _records(info, dctx, path):
                if lsn > upto:
                    return
                if lsn > after:
                    yield lsn, record


def _read_segment(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(size)
    except FileNotFoundError:
        raise StorageError(
            f"write-ahead log segment {path} disappeared during replay "
            f"(truncate_before ran concurrently?)"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot read write-ahead log segment {path}: {_describe(exc)}") from exc
    if len(data) != size:
        raise StorageError(
            f"write-ahead log segment {path} holds {len(data)} bytes, expected {size}"
        )
    return data


def _records(
    info: _BlockInfo, dctx: zstandard.ZstdDecompressor, path: Path
) -> list[tuple[int, memoryview]]:
    """Decompress a block body and split it into (LSN, record view) pairs."""
    if info.codec == CODEC_ZSTD:
        try:
            raw = dctx.decompress(info.body, max_output_size=info.raw_len)
        except zstandard.ZstdError as exc:
            raise StorageError(
                f"{path}: block of LSN {info.first_lsn} does not decompress: {exc}"
            ) from exc
    else:
        raw = info.body.tobytes()
    n = len(raw)
    spans = []
    off = 0
    for _ in range(info.count):
        if off + 4 > n:
            break
        (length,) = _U32.unpack_from(raw, off)
        off += 4
        if off + length > n:
            break
        spans.append((off, length))
        off += length
    if n != info.raw_len or len(spans) != info.count or off != n:
        raise StorageError(
            f"{path}: block of LSN {info.first_lsn} does not hold {info.count} records in "
            f"{info.raw_len} bytes (a writer bug, not a torn write)"
        )
    view = memoryview(raw).toreadonly()
    first = info.first_lsn
    return [(first + i, view[o : o + length]) for i, (o, length) in enumerate(spans)]


def _as_record(data: Any) -> bytes:
    """Copy any buffer-protocol object into an immutable record."""
    try:
        return memoryview(data).tobytes()
    except TypeError:
        raise UsageError(
            f"a record must be a bytes-like object, got {type(data).__name__}"
        ) from None


def _resolve_async(ready: list[_AsyncWaiter], failure: Callable[[], StorageError] | None) -> None:
    """Resolve futures on their own loops: one call_soon_threadsafe per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
    for _, _, loop, fut in ready:
        by_loop.setdefault(loop, []).append(fut)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_set_futures, futures, failure)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits these futures any more


def _set_futures(futures: list[asyncio.Future], failure: Callable[[], StorageError] | None) -> None:
    for fut in futures:
        if not fut.done():  # a cancelled wait
            if failure is None:
                fut.set_result(None)
            else:
                fut.set_exception(failure())


def _create_segment(path: Path, dir_fd: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        sync_fd(dir_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sync_file(fd: int) -> None:
    """Sync a segment's data (:func:`.fsync.sync_fd`: fails if the sync may have been lost)."""
    sync_fd(fd, data_only=True)


def _write_all(fd: int, header: bytes, body: bytes) -> None:
    total = len(header) + len(body)
    written = os.writev(fd, (header, body))
    if written < total:  # short write (rare): finish it from a joined copy
        rest = memoryview(header + body)[written:]
        while rest:
            k = os.write(fd, rest)
            if k <= 0:
                raise OSError(errno.EIO, "write returned 0 bytes")
            rest = rest[k:]


#: Fault-injection test hook (docs/reliability.md, "Slow storage"): if the environment
#: variable ``VITALCORE_WAL_TEST_BYTES_PER_S`` is set when this module is imported, the
#: writer thread sleeps ``len(block) / rate`` seconds before writing each commit block,
#: emulating a disk of that bandwidth. Unset (the default) it costs one comparison per
#: block. Never set it in production.
_TEST_BYTES_PER_S = float(os.environ.get("VITALCORE_WAL_TEST_BYTES_PER_S") or 0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
