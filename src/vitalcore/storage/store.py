"""The ingest pipeline on local disk: decode, de-duplicate, log, buffer, flush.

:class:`Store` ties the pieces together in the order that makes "acknowledged" mean
"survives a crash, exactly once"::

    feed(bytes) ─► FrameDecoder ─┐
                                 ├─ commit() ─► StreamTable (drop duplicates)
                                 │             ─► WriteAheadLog.append (one record) ─► LSN
                                 │             ─► StreamBuffers (live windows)
                                 │             ─► pending batches (in memory)
    flush() (background thread) ─┴─► HistoryStore.write (Parquet) ─► checkpoint ─► WAL truncate

A transport acknowledges a device's message once the LSN of the commit that holds it
is durable (:meth:`Store.wait_durable` / :meth:`Store.durable`). The checkpoint file
records the last LSN whose rows are in Parquet and the stream table's sequence state;
on restart, Parquet files beyond the checkpoint are removed and the WAL is replayed
from it, so no row is lost or stored twice, and a retransmission of a frame stored
before the restart is still recognised as a duplicate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._ext.streamtab import StreamTable, Verdict
from ..batch import DecodedBatch
from ..buffers import StreamBuffers
from ..codec import FrameDecoder
from ..errors import BackPressureError, StorageError, UsageError
from ..jsonframes import JsonFrameDecoder
from .fsync import sync_fd, sync_path
from .history import HistoryStore, history_table
from .wal import WriteAheadLog, _describe

__all__ = ["Store"]

log = logging.getLogger("vitalcore.storage")

_DUPLICATE = int(Verdict.DUPLICATE)
_N_VERDICTS = max(Verdict) + 1
_VERDICT_COUNTERS = (("duplicates", _DUPLICATE), ("gaps", int(Verdict.GAP)),
                     ("late", int(Verdict.LATE)), ("restarts", int(Verdict.RESTART)))

CHECKPOINT = "checkpoint.json"
STREAMS = "streams.npz"
#: Seconds between attempts to reopen a failed write-ahead log (see Store.commit), at first.
WAL_RETRY_S = 1.0
#: Longest delay between reopen attempts while the cause of the failure lasts (s).
WAL_RETRY_MAX_S = 30.0


class Store:
    """Durable, de-duplicating store of decoded frames under one directory.

    Parameters
    ----------
    root : path
        Directory of the store: ``wal/``, ``history/``, ``checkpoint.json``,
        ``streams.npz``. Created if missing; recovered if it holds a store.
    sync : {"group", "always", "none"}
        WAL durability policy (see :class:`~vitalcore.storage.wal.SyncPolicy`).
    group_commit_ms : float
        WAL group-commit window in ms.
    window_s : float
        Seconds of waveform kept per stream in the live buffers.
    flush_interval_s : float
        The background flusher writes pending data to Parquet this often (s), and
        sooner when pending data passes half of ``max_unflushed_bytes``. Each flush
        writes one file per table, UTC day and device: longer intervals make fewer,
        larger files (see docs/storage.md). 0 turns the thread off; call
        :meth:`flush` yourself.
    max_unflushed_bytes : int
        Bound on the raw frame bytes committed but not yet in Parquet. :meth:`feed`
        raises :class:`~vitalcore.errors.BackPressureError` (and takes nothing) while
        it is exceeded; the memory held by pending batches is about 2-3x this.
    keep_rejects : int
        Rejected frames kept for inspection by the decoder.
    flush_nice : int
        The flusher thread (and the encoder threads it starts) runs this many nice levels
        below the rest of the process (Linux; 0: same priority). At 10,000 devices a flush
        (~14 s of data) keeps both cores busy for 2-4 s; at the process's own priority the
        p99 publish-to-PUBACK of the 2 s rows around a flush peaked at 0.54-0.71 s (one
        soak), at nice 10 at 0.09-0.52 s (four soaks; docs/server.md "Session 5"). Nice
        19 was worse: the flush then ran so long that it overlapped most of the run. The
        flush must still keep up on average, or :meth:`feed` pushes back.
    flush_threads : int, optional
        Parquet files a flush encodes in parallel (``HistoryStore(threads=...)``); default
        one per CPU. With 8 on this 2-core machine, the 8 encoders at nice 10 together
        weighed almost as much as the event loop in the kernel's scheduler, and the
        per-2-s p99 around each flush peaked at 0.09-0.52 s (four soaks); with 2, at
        0.10-0.17 s (one soak; docs/server.md, "Session 5").
    wal_retry_s : float
        After an I/O error failed the write-ahead log (disk full, read-only file system),
        :meth:`commit` reopens it, first after this many seconds, then at doubling
        intervals (up to :data:`WAL_RETRY_MAX_S`) while it keeps failing, and goes on once
        the disk is usable again; until then it raises :class:`~vitalcore.errors.StorageError`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        sync: str = "group",
        group_commit_ms: float = 2.0,
        window_s: float = 30.0,
        flush_interval_s: float = 60.0,
        max_unflushed_bytes: int = 256 << 20,
        keep_rejects: int = 256,
        flush_nice: int = 10,
        flush_threads: int | None = None,
        wal_retry_s: float = WAL_RETRY_S,
    ) -> None:
        if flush_interval_s < 0 or max_unflushed_bytes <= 0 or wal_retry_s < 0:
            raise UsageError("flush_interval_s and wal_retry_s must be >= 0 and "
                             "max_unflushed_bytes > 0")
        if not 0 <= flush_nice <= 19:
            raise UsageError(f"flush_nice must be in 0..19, got {flush_nice!r}")
        self.root = Path(root)
        self.decoder = FrameDecoder(keep_rejects=keep_rejects)
        self.json = JsonFrameDecoder(self.decoder)
        self.streams = StreamTable()
        self.buffers = StreamBuffers(window_s)
        self.max_unflushed_bytes = max_unflushed_bytes
        self._lock = threading.Lock()  # guards _pending and counters shared with the flusher
        self._flush_lock = threading.Lock()  # one flush at a time
        self._pending: list[tuple[int, DecodedBatch]] = []
        self._pending_bytes = 0
        self._unlogged: DecodedBatch | None = None  # classified, refused by a full WAL queue
        self.counters = dict.fromkeys(
            ("commits", "frames", "duplicates", "gaps", "missing", "late", "restarts",
             "flushes", "flushed_frames", "flush_errors", "listener_errors", "wal_reopens",
             "frames_not_logged"), 0
        )
        self._commit_listeners: list[Callable[[DecodedBatch], None]] = []
        self._wake = threading.Event()  # set when pending data passes half its bound
        self._wal_options = {"sync": sync, "group_commit_ms": group_commit_ms}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot open the store in {self.root}: {_describe(exc)}") from exc
        # The WAL first: its lock makes this the directory's only writer before the
        # recovery below deletes Parquet files beyond the checkpoint (in a second Store
        # opened on a live directory, that would delete what the live one's flush wrote
        # just before its checkpoint, and the WAL truncation after it would lose them).
        self.wal = WriteAheadLog(self.root / "wal", **self._wal_options)
        try:  # a read-only or full disk must say so, not leak an OSError from a helper
            threads = flush_threads if flush_threads is not None else os.cpu_count() or 2
            self.history = HistoryStore(self.root / "history", threads=threads)
            self._checkpoint_lsn = self._recover_checkpoint()
        except BaseException as exc:
            with contextlib.suppress(StorageError):
                self.wal.close()
            if isinstance(exc, OSError):
                raise StorageError(
                    f"cannot open the store in {self.root}: {_describe(exc)}") from exc
            raise
        self._wal_retry_s = float(wal_retry_s)
        self._wal_retry_delay = self._wal_retry_s  # doubles while reopened logs fail again
        self._next_wal_retry = 0.0  # monotonic time of the next reopen attempt
        self._reopened_at = -1  # last LSN of the last reopened log, until it commits more
        self._replay()
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval_s:
            self._flusher = threading.Thread(
                target=self._flush_loop, args=(flush_interval_s, flush_nice),
                name="vitalcore-flush",
                daemon=True,
            )
            self._flusher.start()

    # -- recovery ---------------------------------------------------------------------
    def _recover_checkpoint(self) -> int:
        path = self.root / CHECKPOINT
        if not path.exists():
            removed = self.history.remove_after(0)
            if removed:
                log.warning("removed %d Parquet file(s) written before any checkpoint", len(removed))
            return 0
        lsn = self._load_checkpoint_state(self.streams)
        removed = self.history.remove_after(lsn)
        if removed:
            log.warning("removed %d Parquet file(s) beyond checkpoint LSN %d", len(removed), lsn)
        return lsn

    def _load_checkpoint_state(self, streams: StreamTable) -> int:
        """Load the checkpointed sequence state into ``streams``; the checkpoint LSN."""
        try:
            lsn = int(json.loads((self.root / CHECKPOINT).read_text())["lsn"])
            with np.load(self.root / STREAMS) as z:
                streams.load({k: z[k] for k in z.files})
        except (OSError, ValueError, KeyError) as exc:
            raise StorageError(f"checkpoint of {self.root} is unreadable: {exc}") from exc
        return lsn

    def _replay(self) -> None:
        n = 0
        for lsn, record in self.wal.replay(self._checkpoint_lsn):
            self.decoder.feed(record)
            batch = self.decoder.take()
            with self._lock:  # rebuild the sequence state; keep every logged frame
                self.streams.classify_batch(batch)
                self._add_pending(lsn, batch)
            self.buffers.append(batch)
            n += 1
        if n:
            log.info("replayed %d WAL record(s) after checkpoint LSN %d", n, self._checkpoint_lsn)

    # -- ingest -----------------------------------------------------------------------
    def feed(self, data: Any, device_id: int = 0) -> int:
        """Decode the frames of one message (binary) into the next commit.

        ``device_id`` non-zero is the device the connection authenticated as: frames of
        any other device are rejected (counted). Returns the frames accepted.

        Raises
        ------
        BackPressureError
            Too much committed data awaits its flush to Parquet; nothing was taken.
        """
        self._check_room()
        return self.decoder.feed(data, device_id)

    def feed_json(self, document: bytes | str, device_id: int = 0) -> int:
        """:meth:`feed` for a JSON document (see docs/protocol.md, "JSON form")."""
        self._check_room()
        return self.json.feed(document, device_id)

    def _check_room(self) -> None:
        if self._closed:
            raise StorageError("store is closed")
        if self._unlogged is not None:
            raise BackPressureError("the write-ahead log's queue is full; retry after commit()")
        if self._pending_bytes > self.max_unflushed_bytes:
            raise BackPressureError(
                f"{self._pending_bytes} bytes await their flush to Parquet "
                f"(bound {self.max_unflushed_bytes}); retry after the flush"
            )

    def commit(self) -> int:
        """Log everything fed since the last commit as one WAL record.

        Duplicates are dropped first (counted). Returns an LSN such that once it is
        durable, so is every frame fed before this call, by whichever caller committed
        it: the new record's LSN, or, if nothing new was fed (all duplicates, or another
        transport sharing this store committed it), the last LSN logged (0 if none ever
        was). Transports acknowledge after waiting for exactly this LSN.

        Raises
        ------
        BackPressureError
            The WAL's queue is full. The batch is kept and goes into the next commit:
            call ``commit()`` again later; nothing fed is lost.
        StorageError
            The WAL failed (disk full, I/O error). The store refuses further commits;
            frames fed since the last successful commit are not durable (never report
            them acknowledged).
        """
        if self.wal.failed:
            self._reopen_wal()  # raises StorageError while the cause lasts
        elif self._reopened_at >= 0 and self.wal.durable_lsn > self._reopened_at:
            self._reopened_at = -1  # the reopened log works: back to the short delay
            self._wal_retry_delay = self._wal_retry_s
        batch = self.decoder.take()
        # Classification, the WAL append and the pending list change under one lock, so
        # the sequence state a flush checkpoints covers exactly the frames it flushes
        # (a frame in the state but not in the WAL would make its retransmission after
        # a crash look like a duplicate and be lost).
        with self._lock:
            if batch.n_frames:
                keep = self._classify(batch)
                if not keep.all():
                    batch = batch.select(keep)
            if self._unlogged is not None:  # a batch the WAL refused last time goes first
                batch = DecodedBatch.concat([self._unlogged, batch])
                self._unlogged = None
            if batch.n_frames == 0:
                return self.wal.last_lsn
            parts = _split(batch, self.wal.max_record_bytes)
            logged: list[DecodedBatch] = []
            refused: BackPressureError | None = None
            for i, part in enumerate(parts):
                try:
                    lsn = self.wal.append(part.raw)  # queues only: never waits for the disk
                except BackPressureError as exc:
                    rest = parts[i:]
                    self._unlogged = rest[0] if len(rest) == 1 else DecodedBatch.concat(rest)
                    refused = exc
                    break
                self._add_pending(lsn, part)
                logged.append(part)
        for part in logged:  # what is in the WAL is live, also when the rest must wait
            self.buffers.append(part)
            for listener in tuple(self._commit_listeners):
                self._notify(listener, part)
        if refused is not None:
            raise refused
        return lsn

    def _reopen_wal(self) -> None:
        """Replace a failed write-ahead log by a fresh one recovered from the disk.

        The WAL fails for good on an I/O error (disk full, read-only file system, EIO);
        once the cause is gone the store reopens the directory, which recovers what is
        really on disk. Attempts are ``wal_retry_s`` apart, doubling up to
        :data:`WAL_RETRY_MAX_S` while each reopened log fails again before committing
        anything (each attempt scans the log: a still-full disk must not cost the event
        loop a scan a second). Everything committed
        after the last durable record was never acknowledged and is not on disk: its
        pending batches and the frames the WAL refused are dropped, and the sequence
        state is rebuilt from the checkpoint plus the batches still in the log, so that
        the devices' retransmissions of the dropped frames are accepted again instead of
        being taken for duplicates (which would acknowledge frames stored nowhere).

        Raises
        ------
        StorageError
            Not yet time to retry, a flush is running, or the directory still cannot be
            opened; the failed log stays in place.
        """
        failed = self.wal
        now = time.monotonic()
        if now < self._next_wal_retry or not self._flush_lock.acquire(blocking=False):
            failed.append(b"")  # raises the failure, naming its cause
        try:
            self._next_wal_retry = now + self._wal_retry_delay
            self._wal_retry_delay = min(max(2 * self._wal_retry_delay, self._wal_retry_s),
                                        WAL_RETRY_MAX_S)
            try:
                failed.close()
            except StorageError:
                pass  # the failure we are recovering from
            try:
                wal = WriteAheadLog(self.root / "wal", **self._wal_options)
            except StorageError as exc:
                log.error("write-ahead log still unusable, retry in %.0f s: %s",
                          self._next_wal_retry - now, exc)
                raise
            streams = StreamTable()
            if (self.root / CHECKPOINT).exists():
                self._load_checkpoint_state(streams)
            # Records after the failed log's durable LSN may be back on open (written, but
            # their fsync failed: the page cache may hold what the disk lost). Never
            # reported durable, they are treated as not stored: their retransmissions are
            # logged again (a crash before the next checkpoint could then replay both).
            limit = min(wal.last_lsn, failed.durable_lsn)
            with self._lock:
                keep = [(lsn, b) for lsn, b in self._pending if lsn <= limit]
                dropped = sum(b.n_frames for lsn, b in self._pending if lsn > limit)
                if self._unlogged is not None:
                    dropped += self._unlogged.n_frames
                    self._unlogged = None
                for _, b in keep:
                    streams.classify_batch(b)
                self._pending = keep
                self._pending_bytes = sum(len(b.raw) for _, b in keep)
                self.streams = streams
                self.wal = wal
                self._reopened_at = wal.durable_lsn
                self.counters["wal_reopens"] += 1
                self.counters["frames_not_logged"] += dropped
                self.counters["frames"] -= dropped
        finally:
            self._flush_lock.release()
        log.warning("write-ahead log reopened after a failure at LSN %d: %d frame(s) committed "
                    "after it were not durable and were dropped (never acknowledged; devices "
                    "resend them)", limit, dropped)

    def add_commit_listener(self, callback: Callable[[DecodedBatch], None]) -> None:
        """Call ``callback(batch)`` with each batch :meth:`commit` logs (duplicates removed).

        It runs on the thread that called ``commit()`` (the event loop, for the MQTT
        server), after the WAL append is queued and before ``commit()`` returns, so it
        sees committed frames that may not be durable yet. It must be quick and must not
        call ``feed()``/``commit()``. An exception it raises is logged and counted
        (``listener_errors`` in :meth:`stats`), never passed on: a listener cannot break
        ingest. Adding the same callback twice calls it twice.
        """
        self._commit_listeners.append(callback)

    def remove_commit_listener(self, callback: Callable[[DecodedBatch], None]) -> None:
        """Stop calling ``callback`` (UsageError if it was not added)."""
        try:
            self._commit_listeners.remove(callback)
        except ValueError:
            raise UsageError(f"{callback!r} is not a commit listener of this store") from None

    def _notify(self, listener: Callable[[DecodedBatch], None], batch: DecodedBatch) -> None:
        try:
            listener(batch)
        except Exception:
            with self._lock:
                self.counters["listener_errors"] += 1
                n = self.counters["listener_errors"]
            if n & (n - 1) == 0:  # 1st, 2nd, 4th, 8th...: visible, never a flood
                log.exception("commit listener %r failed (%d failure(s) so far)", listener, n)

    def ingest(self, data: Any, device_id: int = 0) -> int:
        """:meth:`feed` then :meth:`commit`: returns the LSN to wait for (see commit)."""
        self.feed(data, device_id)
        return self.commit()

    @property
    def durable_lsn(self) -> int:
        """Highest LSN whose commit is durable (every LSN up to it is); 0 if none."""
        return self.wal.durable_lsn

    def wait_durable(self, lsn: int, timeout: float | None = None) -> None:
        """Block until commit ``lsn`` is durable (StorageError if the WAL failed)."""
        if lsn:
            self.wal.wait_durable(lsn, timeout)

    async def durable(self, lsn: int) -> None:
        """Wait, without blocking the event loop, until commit ``lsn`` is durable."""
        if lsn and lsn > self.wal.durable_lsn:
            await self.wal.wait_durable_async(lsn)

    def _classify(self, batch: DecodedBatch) -> np.ndarray:
        """Update sequence tracking (lock held); return the mask of non-duplicate frames."""
        _, verdict, missing = self.streams.classify_batch(batch)
        n = np.bincount(verdict, minlength=_N_VERDICTS).tolist()  # frames per verdict
        c = self.counters
        for name, v in _VERDICT_COUNTERS:
            c[name] += n[v]
        c["missing"] += int(missing.sum())
        return verdict != _DUPLICATE

    def _add_pending(self, lsn: int, batch: DecodedBatch) -> None:
        """Queue a logged batch for the next flush (lock held)."""
        self._pending.append((lsn, batch))
        self._pending_bytes += len(batch.raw)
        self.counters["commits"] += 1
        self.counters["frames"] += batch.n_frames
        if self._pending_bytes > self.max_unflushed_bytes // 2:
            self._wake.set()  # flush early, before feed() has to push back

    # -- flush ------------------------------------------------------------------------
    def flush(self) -> int:
        """Write pending batches to Parquet, checkpoint, truncate the WAL.

        Returns the checkpoint LSN. Safe to call from any thread; the flusher thread
        calls it periodically.
        """
        with self._flush_lock:
            with self._lock:
                if self._unlogged is not None:  # its frames are in the sequence state but
                    return self._checkpoint_lsn  # not in the WAL: checkpoint next time
                pending = list(self._pending)
                state = self.streams.state()  # exactly the frames up to pending[-1]
            if not pending:
                return self._checkpoint_lsn
            first, last = pending[0][0], pending[-1][0]
            self.wal.wait_durable(last)  # never checkpoint past what the WAL holds
            batch = DecodedBatch.concat([b for _, b in pending], raw=False)
            self.history.write(batch, first, last)
            self._write_checkpoint(last, state)
            self.history.checkpoint(last)
            self.wal.truncate_before(last + 1)
            with self._lock:
                del self._pending[: len(pending)]
                self._pending_bytes -= sum(len(b.raw) for _, b in pending)
                self.counters["flushes"] += 1
                self.counters["flushed_frames"] += batch.n_frames
            self._checkpoint_lsn = last
            return last

    def _write_checkpoint(self, lsn: int, state: dict[str, np.ndarray]) -> None:
        tmp_streams = self.root / (STREAMS + ".tmp")
        with open(tmp_streams, "wb") as f:
            np.savez(f, **state)
            f.flush()
            sync_fd(f.fileno())
        tmp = self.root / (CHECKPOINT + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"lsn": lsn, "written_at": time.time()}, f)
            f.flush()
            sync_fd(f.fileno())
        os.replace(tmp_streams, self.root / STREAMS)
        os.replace(tmp, self.root / CHECKPOINT)
        sync_path(self.root)

    def _flush_loop(self, interval: float, nice: int) -> None:
        _renice_this_thread(nice)
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # keep flushing later; ingest is bounded by back-pressure
                self.counters["flush_errors"] += 1
                log.exception("flush to Parquet failed; will retry")

    # -- reads --------------------------------------------------------------------------
    # Each reader answers from the Parquet history plus the committed, not yet flushed
    # batches of the device, so a query sees everything committed (durable or not).

    def _recent(self, table: str, device_id: int) -> pa.Table | None:
        with self._lock:
            pending = [b for _, b in self._pending]
        parts = []
        for b in pending:
            mine = b.tables["frames"]["device_id"] == device_id
            if mine.any():
                parts.append(history_table(b.select(mine), table))
        return pa.concat_tables(parts) if parts else None

    def read_waveforms(self, device_id: int, t0_us: int, t1_us: int,
                       frame_type: int | None = None, channel: int | None = None) -> pa.Table:
        """Waveform frames of a device overlapping [t0_us, t1_us) (HistoryStore.read_waveforms)."""
        return self.history.read_waveforms(device_id, t0_us, t1_us, frame_type, channel,
                                           extra=self._recent("waveforms", device_id))

    def read_samples(self, device_id: int, frame_type: int, channel: int, t0_us: int,
                     t1_us: int) -> tuple[np.ndarray, np.ndarray]:
        """One stream's (ts_us, physical values) in [t0_us, t1_us) (HistoryStore.read_samples)."""
        return self.history.read_samples(device_id, frame_type, channel, t0_us, t1_us,
                                          extra=self._recent("waveforms", device_id))

    def read_numerics(self, device_id: int, t0_us: int, t1_us: int,
                      codes: Iterable[int] | None = None) -> pa.Table:
        """Numeric rows of a device in [t0_us, t1_us) (HistoryStore.read_numerics)."""
        return self.history.read_numerics(device_id, t0_us, t1_us, codes,
                                          extra=self._recent("numerics", device_id))

    def read_status(self, device_id: int, t0_us: int, t1_us: int) -> pa.Table:
        """Status rows of a device in [t0_us, t1_us)."""
        return self.history.read_status(device_id, t0_us, t1_us,
                                        extra=self._recent("status", device_id))

    def read_accessories(self, device_id: int, t0_us: int, t1_us: int) -> pa.Table:
        """Accessory rows (from status frames) of a device in [t0_us, t1_us)."""
        return self.history.read_accessories(device_id, t0_us, t1_us,
                                             extra=self._recent("accessories", device_id))

    def read_acks(self, device_id: int, t0_us: int, t1_us: int) -> pa.Table:
        """Command acknowledgements of a device in [t0_us, t1_us)."""
        return self.history.read_acks(device_id, t0_us, t1_us,
                                      extra=self._recent("acks", device_id))

    # -- lifecycle ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters of every stage (decoder, streams, WAL, buffers, flush)."""
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
            out["pending_bytes"] = self._pending_bytes
        out["checkpoint_lsn"] = self._checkpoint_lsn
        out["decoder"] = self.decoder.stats()
        out["wal"] = self.wal.stats()
        out["buffers"] = self.buffers.stats()
        return out

    def close(self, flush: bool = True) -> None:
        """Stop the flusher, flush (unless ``flush=False``) and close the WAL. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            if flush:
                self.commit()
                self.flush()
        finally:
            self.wal.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(batch: DecodedBatch, max_bytes: int) -> list[DecodedBatch]:
    """``batch`` as consecutive parts whose raw bytes each fit one WAL record."""
    if len(batch.raw) <= max_bytes:
        return [batch]
    ends = np.cumsum(batch.tables["frames"]["raw_length"].astype(np.int64))
    parts = []
    start = 0
    while start < len(ends):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + max_bytes, side="right"))
        stop = max(stop, start + 1)  # a single frame is far below any record limit
        keep = np.zeros(len(ends), dtype=bool)
        keep[start:stop] = True
        parts.append(batch.select(keep))
        start = stop
    return parts


def _renice_this_thread(increment: int) -> None:
    """Lower the calling thread's CPU priority by ``increment`` nice levels (Linux, where
    nice is per thread and the threads it starts inherit it); a no-op elsewhere."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + increment))
    except OSError as exc:
        log.warning("cannot lower the flusher's priority: %s", exc)
