# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Per-stream sequence-number tracking (see docs/storage.md, "Data flow and sequence numbers").

A stream is ``(device_id, stream_id)`` with ``stream_id = frame_type << 8 | channel``
(:func:`vitalcore.protocol.stream_id`). :class:`StreamTable` maps each stream to a
dense index through an open-addressing hash table written in C, and classifies a
whole batch of frames in one C loop: no Python object per frame.

Verdict rules, in serial-number arithmetic (RFC 1982) on u32 sequence numbers: let
``d = int32(seq - last_seq)`` where ``last_seq`` is the newest sequence number of the
stream and ``max_ts`` the newest device timestamp accepted since the stream (re)started.

- first frame of a stream: NEW.
- ``d == 1``: NEW. ``d > 1``: GAP, ``missing = d - 1``. Both advance ``last_seq``.
- ``d <= 0`` and ``ts_us > max_ts``: RESTART. The sequence counter went back while the
  device clock went forward: the device rebooted (or reset its counter). The stream
  starts a new epoch at ``seq``; the frame is accepted.
- ``d <= 0`` otherwise, ``-d < 1024`` and ``seq`` already accepted: DUPLICATE.
- ``d <= 0`` otherwise: LATE (accepted out of order; within the 1024-wide window it is
  marked seen, so a second copy is a DUPLICATE).

The window is 1024 sequence numbers wide so that a device's QoS 1/2 resend after a
reconnect (up to the server's receive maximum of messages in flight, several frames of
one stream per message for a batching gateway) still falls inside it. A copy of a frame
resent more than 1023 sequence numbers behind the newest is accepted again (LATE).

``d == -2**31`` (exactly half the sequence space away) counts as behind.
"""

from enum import IntEnum

import numpy as np

from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memset

from vitalcore.errors import UsageError


class Verdict(IntEnum):
    """Classification of one frame by :meth:`StreamTable.classify`."""

    NEW = V_NEW  #: the next sequence number, or the first frame of a stream
    GAP = V_GAP  #: ahead of the next expected number; ``missing`` numbers were skipped
    DUPLICATE = V_DUPLICATE  #: already accepted (drop it)
    LATE = V_LATE  #: behind the newest number and not seen before: accepted out of order
    RESTART = V_RESTART  #: sequence went back with a newer timestamp: device restarted


#: Columns of :meth:`StreamTable.state`, in order, with their dtypes.
STATE_COLUMNS = (
    ("device_id", np.dtype("<u8")),
    ("stream_id", np.dtype("<u2")),
    ("last_seq", np.dtype("<u4")),
    ("seen", np.dtype("<u8")),  # shape (n, SEEN_WORDS): word w holds bits 64w..64w+63
    ("max_ts_us", np.dtype("<i8")),
    ("frames", np.dtype("<u8")),
    ("gaps", np.dtype("<u8")),
    ("missing", np.dtype("<u8")),
    ("duplicates", np.dtype("<u8")),
    ("late", np.dtype("<u8")),
    ("restarts", np.dtype("<u8")),
)

#: Counter columns of :meth:`StreamTable.state`.
COUNTERS = ("frames", "gaps", "missing", "duplicates", "late", "restarts")

#: Version of the :meth:`StreamTable.state` layout, checked by :meth:`StreamTable.load`.
#: Version 1 (a 64-wide window: ``seen`` one u8 per stream) is still loaded.
STATE_VERSION = 2

#: Width of the duplicate window (sequence numbers behind the newest) and its u64 words.
WINDOW = SEEN_WINDOW
WORDS = SEEN_WORDS

cdef enum:
    MIN_STREAMS = 64


cdef inline uint64_t _hash(uint64_t device_id, uint16_t stream_id) noexcept nogil:
    # splitmix64 finaliser over both key parts
    cdef uint64_t z = device_id ^ (<uint64_t>stream_id * 0x9E3779B97F4A7C15ULL)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline void _seen_reset(StreamState* s) noexcept nogil:
    """Only the newest sequence number seen (a new stream, an epoch, a jump >= window)."""
    memset(s.seen, 0, SEEN_WORDS * sizeof(uint64_t))
    s.seen[0] = 1


cdef inline void _seen_advance(StreamState* s, uint32_t d) noexcept nogil:
    """Shift the window by ``d`` (> 0) newer sequence numbers and mark the newest seen."""
    cdef int w, ws, bs
    cdef uint64_t v
    if d >= SEEN_WINDOW:
        _seen_reset(s)
        return
    ws = <int>(d >> 6)
    bs = <int>(d & 63)
    w = SEEN_WORDS - 1
    while w >= 0:  # high words first: each reads only words at or below its own index
        v = 0
        if w - ws >= 0:
            v = s.seen[w - ws] << bs
            if bs and w - ws - 1 >= 0:
                v |= s.seen[w - ws - 1] >> (64 - bs)
        s.seen[w] = v
        w -= 1
    s.seen[0] |= 1


cdef inline uint8_t _classify(StreamState* s, uint32_t seq, int64_t ts_us,
                              uint32_t* missing) noexcept nogil:
    """Classify one frame of an existing stream and update its state."""
    cdef int32_t d = <int32_t>(seq - s.last_seq)
    cdef uint32_t back
    cdef uint64_t bit
    missing[0] = 0
    if d > 0:
        _seen_advance(s, <uint32_t>d)
        s.last_seq = seq
        if ts_us > s.max_ts_us:
            s.max_ts_us = ts_us
        s.frames += 1
        if d == 1:
            return V_NEW
        missing[0] = <uint32_t>(d - 1)
        s.gaps += 1
        s.missing += <uint32_t>(d - 1)
        return V_GAP
    if ts_us > s.max_ts_us:
        s.last_seq = seq
        _seen_reset(s)
        s.max_ts_us = ts_us
        s.frames += 1
        s.restarts += 1
        return V_RESTART
    back = <uint32_t>(-(<int64_t>d))
    if back < SEEN_WINDOW:
        bit = (<uint64_t>1) << (back & 63)
        if s.seen[back >> 6] & bit:
            s.duplicates += 1
            return V_DUPLICATE
        s.seen[back >> 6] |= bit
    s.frames += 1
    s.late += 1
    return V_LATE


def _column(name, a, dtype):
    """``a`` as a 1-D array of exactly ``dtype``; UsageError otherwise (no silent casts)."""
    arr = np.asarray(a)
    if arr.ndim != 1 or arr.dtype != dtype:
        raise UsageError(
            f"{name} must be a 1-D array of dtype {dtype}, got {arr.dtype} with shape {arr.shape}"
        )
    return arr


def _seen_column(a, version):
    """The ``seen`` column of a state as (n, SEEN_WORDS) u8 words (version 1: one word)."""
    arr = np.asarray(a)
    if version == 1:
        arr = _column("seen", arr, np.dtype("<u8"))
        out = np.zeros((arr.shape[0], SEEN_WORDS), np.dtype("<u8"))
        out[:, 0] = arr
        return out
    if arr.ndim != 2 or arr.shape[1] != SEEN_WORDS or arr.dtype != np.dtype("<u8"):
        raise UsageError(f"seen must be an (n, {SEEN_WORDS}) array of dtype uint64, got "
                         f"{arr.dtype} with shape {arr.shape}")
    return arr


def stream_ids(frame_type, channel):
    """Stream ids ``frame_type << 8 | channel`` (u2) of u1 columns ``frame_type``, ``channel``."""
    ft = np.asarray(frame_type)
    ch = np.asarray(channel)
    if ft.shape != ch.shape:
        raise UsageError("frame_type and channel must have the same shape")
    return (ft.astype(np.uint16) << 8) | ch.astype(np.uint16)


cdef class StreamTable:
    """Sequence-number state of every stream, classified a batch at a time.

    Parameters
    ----------
    capacity_hint : int
        Expected number of streams (devices x streams per device). The table grows
        past it by doubling; the hint only avoids early rehashing.

    Notes
    -----
    Memory: 216 bytes per stream (state, 128 of them the duplicate window) plus 8-16
    bytes of hash slots; 40,000 streams take about 9.3 MB. Dense indices are given in order of first appearance and are
    stable for the lifetime of the table and across :meth:`state` / :meth:`load`.
    """

    def __cinit__(self, Py_ssize_t capacity_hint=1024):
        self._streams = NULL
        self._slots = NULL
        self._n = 0
        self._cap = 0
        self._slot_mask = 0

    def __init__(self, Py_ssize_t capacity_hint=1024):
        if capacity_hint < 0:
            raise UsageError(f"capacity_hint must be >= 0, got {capacity_hint}")
        self._reserve(capacity_hint if capacity_hint > MIN_STREAMS else MIN_STREAMS)

    def __dealloc__(self):
        free(self._streams)
        free(self._slots)

    def __len__(self):
        return self._n

    # -- storage ----------------------------------------------------------------------
    cdef int _reserve(self, Py_ssize_t n_streams) except -1:
        """Make room for ``n_streams`` streams in total (load factor of slots <= 1/2)."""
        cdef Py_ssize_t cap, i, nslots
        cdef StreamState* streams
        cdef int32_t* slots
        cdef uint64_t mask, h
        if n_streams > 0x3FFFFFFF:
            raise UsageError(f"a StreamTable holds at most 2**30 streams, asked for {n_streams}")
        if n_streams <= self._cap:
            return 0
        cap = self._cap * 2 if self._cap * 2 > n_streams else n_streams
        streams = <StreamState*>realloc(self._streams, cap * sizeof(StreamState))
        if streams == NULL:
            raise MemoryError()
        self._streams = streams
        self._cap = cap
        nslots = 1
        while nslots < 2 * cap:
            nslots <<= 1
        if <uint64_t>nslots == self._slot_mask + 1:
            return 0
        slots = <int32_t*>malloc(nslots * sizeof(int32_t))
        if slots == NULL:
            raise MemoryError()
        memset(slots, 0xFF, nslots * sizeof(int32_t))
        mask = <uint64_t>(nslots - 1)
        for i in range(self._n):
            h = _hash(streams[i].device_id, streams[i].stream_id) & mask
            while slots[h] != -1:
                h = (h + 1) & mask
            slots[h] = <int32_t>i
        free(self._slots)
        self._slots = slots
        self._slot_mask = mask
        return 0

    cdef Py_ssize_t _find(self, uint64_t device_id, uint16_t stream_id) noexcept nogil:
        cdef uint64_t h = _hash(device_id, stream_id) & self._slot_mask
        cdef int32_t i = self._slots[h]
        while i != -1:
            if self._streams[i].device_id == device_id and self._streams[i].stream_id == stream_id:
                return i
            h = (h + 1) & self._slot_mask
            i = self._slots[h]
        return -1

    cdef int32_t _insert(self, uint64_t device_id, uint16_t stream_id) noexcept nogil:
        """Add a stream (caller checked it is absent and that capacity suffices)."""
        cdef uint64_t h = _hash(device_id, stream_id) & self._slot_mask
        cdef int32_t i = <int32_t>self._n
        while self._slots[h] != -1:
            h = (h + 1) & self._slot_mask
        self._slots[h] = i
        memset(&self._streams[i], 0, sizeof(StreamState))
        self._streams[i].device_id = device_id
        self._streams[i].stream_id = stream_id
        self._n += 1
        return i

    cdef void _clear(self) noexcept:
        self._n = 0
        memset(self._slots, 0xFF, (self._slot_mask + 1) * sizeof(int32_t))

    # -- classification -----------------------------------------------------------------
    def classify(self, device_id, stream_id, seq, ts_us):
        """Classify frames in order and update the streams' state.

        Parameters
        ----------
        device_id : ndarray of uint64
        stream_id : ndarray of uint16
            ``frame_type << 8 | channel`` (see :func:`stream_ids`).
        seq : ndarray of uint32
        ts_us : ndarray of int64
            Device timestamps in µs since the Unix epoch (used by the restart rule).

        Returns
        -------
        stream_index : ndarray of int32
            Dense index of each frame's stream (stable; see :meth:`state`).
        verdict : ndarray of uint8
            :class:`Verdict` of each frame.
        missing : ndarray of uint32
            For GAP frames the number of sequence numbers skipped, else 0.

        Raises
        ------
        UsageError
            Arrays not 1-D of exactly these dtypes, or of different lengths. The table
            is unchanged.

        Notes
        -----
        Frames are processed in array order, so a duplicate within the same batch is
        recognised. The update is all-or-nothing: room for every new stream is reserved
        before the classifying loop (when fewer free entries are left than there are
        frames, a first pass counts the frames of unknown streams), which then cannot fail.
        """
        dev_a = _column("device_id", device_id, np.dtype("<u8"))
        sid_a = _column("stream_id", stream_id, np.dtype("<u2"))
        seq_a = _column("seq", seq, np.dtype("<u4"))
        ts_a = _column("ts_us", ts_us, np.dtype("<i8"))
        cdef Py_ssize_t n = dev_a.shape[0]
        if sid_a.shape[0] != n or seq_a.shape[0] != n or ts_a.shape[0] != n:
            raise UsageError("device_id, stream_id, seq and ts_us must have the same length")
        index_a = np.empty(n, np.int32)
        verdict_a = np.empty(n, np.uint8)
        missing_a = np.empty(n, np.uint32)
        if n == 0:
            return index_a, verdict_a, missing_a
        cdef const uint64_t[:] dev = dev_a
        cdef const uint16_t[:] sid = sid_a
        cdef const uint32_t[:] sq = seq_a
        cdef const int64_t[:] ts = ts_a
        cdef int32_t[::1] index = index_a
        cdef uint8_t[::1] verdict = verdict_a
        cdef uint32_t[::1] missing = missing_a
        cdef Py_ssize_t k, i, unknown = 0
        cdef StreamState* s
        if self._n + n > self._cap:  # frames of streams not in the table bound the new ones
            with nogil:  # (a pass needed only when the room left could be too small)
                for k in range(n):
                    if self._find(dev[k], sid[k]) < 0:
                        unknown += 1
            self._reserve(self._n + unknown)
        with nogil:
            for k in range(n):
                i = self._find(dev[k], sid[k])
                if i < 0:
                    i = self._insert(dev[k], sid[k])
                    s = &self._streams[i]
                    s.last_seq = sq[k]
                    _seen_reset(s)
                    s.max_ts_us = ts[k]
                    s.frames = 1
                    verdict[k] = V_NEW
                    missing[k] = 0
                else:
                    verdict[k] = _classify(&self._streams[i], sq[k], ts[k], &missing[k])
                index[k] = <int32_t>i
        return index_a, verdict_a, missing_a

    def classify_batch(self, batch):
        """:meth:`classify` the ``frames`` table of a :class:`~vitalcore.batch.DecodedBatch`."""
        f = batch.tables["frames"]
        return self.classify(
            f["device_id"], stream_ids(f["frame_type"], f["channel"]), f["seq"], f["ts_us"]
        )

    def lookup(self, device_id, stream_id):
        """Dense index of stream ``(device_id, stream_id)``, or -1 if never seen."""
        if not (0 <= device_id < 2**64 and 0 <= stream_id < 2**16):
            raise UsageError("device_id must fit u64 and stream_id u16")
        return self._find(<uint64_t>device_id, <uint16_t>stream_id)

    # -- checkpoints -----------------------------------------------------------------
    def state(self):
        """Every stream's state as numpy arrays, one entry per dense index.

        Returns
        -------
        dict of str to ndarray
            The columns of :data:`STATE_COLUMNS` plus ``"version"`` (a 0-d int64 array
            holding :data:`STATE_VERSION`). Feed it to :meth:`load` after a restart so a
            frame retransmitted across the restart is still recognised as DUPLICATE.
        """
        cdef Py_ssize_t n = self._n, i, w
        out = {name: np.empty(n, dt) for name, dt in STATE_COLUMNS}
        out["seen"] = np.empty((n, SEEN_WORDS), np.dtype("<u8"))
        cdef uint64_t[::1] dev = out["device_id"]
        cdef uint16_t[::1] sid = out["stream_id"]
        cdef uint32_t[::1] last = out["last_seq"]
        cdef uint64_t[:, ::1] seen = out["seen"]
        cdef int64_t[::1] maxts = out["max_ts_us"]
        cdef uint64_t[::1] frames = out["frames"]
        cdef uint64_t[::1] gaps = out["gaps"]
        cdef uint64_t[::1] miss = out["missing"]
        cdef uint64_t[::1] dups = out["duplicates"]
        cdef uint64_t[::1] late = out["late"]
        cdef uint64_t[::1] restarts = out["restarts"]
        cdef StreamState* s
        for i in range(n):
            s = &self._streams[i]
            dev[i] = s.device_id
            sid[i] = s.stream_id
            last[i] = s.last_seq
            for w in range(SEEN_WORDS):
                seen[i, w] = s.seen[w]
            maxts[i] = s.max_ts_us
            frames[i] = s.frames
            gaps[i] = s.gaps
            miss[i] = s.missing
            dups[i] = s.duplicates
            late[i] = s.late
            restarts[i] = s.restarts
        out["version"] = np.array(STATE_VERSION, np.int64)
        return out

    def load(self, state):
        """Replace the whole table by ``state`` (as returned by :meth:`state`).

        A version 1 state (64-wide window, ``seen`` 1-D: a checkpoint written before
        the window was widened) is loaded into the low word of each window.

        Raises
        ------
        UsageError
            Unknown version, a missing column, wrong dtype or shape, unequal lengths, a
            stream listed twice, or ``seen`` without bit 0 set. The table is unchanged.
        """
        try:
            version = int(np.asarray(state["version"]))
        except (KeyError, TypeError, ValueError):
            raise UsageError("state has no valid 'version' entry") from None
        if version not in (1, STATE_VERSION):
            raise UsageError(f"state version {version} is not 1 or {STATE_VERSION}")
        cols = {}
        for name, dt in STATE_COLUMNS:
            if name not in state:
                raise UsageError(f"state has no column {name!r}")
            if name == "seen":
                cols[name] = _seen_column(state[name], version)
            else:
                cols[name] = _column(name, state[name], dt)
        cdef Py_ssize_t n = cols["device_id"].shape[0], i, w
        if any(a.shape[0] != n for a in cols.values()):
            raise UsageError("state columns must have the same length")
        if n and not (cols["seen"][:, 0] & np.uint64(1)).all():
            raise UsageError("state 'seen' must have bit 0 (the newest sequence number) set")
        keys = cols["device_id"].astype(object) * 65536 + cols["stream_id"]
        if len(set(keys.tolist())) != n:
            raise UsageError("state lists a stream twice")
        self._reserve(n)
        self._clear()
        cdef const uint64_t[:] dev = cols["device_id"]
        cdef const uint16_t[:] sid = cols["stream_id"]
        cdef const uint32_t[:] last = cols["last_seq"]
        cdef const uint64_t[:, :] seen = cols["seen"]
        cdef const int64_t[:] maxts = cols["max_ts_us"]
        cdef const uint64_t[:] frames = cols["frames"]
        cdef const uint64_t[:] gaps = cols["gaps"]
        cdef const uint64_t[:] miss = cols["missing"]
        cdef const uint64_t[:] dups = cols["duplicates"]
        cdef const uint64_t[:] late = cols["late"]
        cdef const uint64_t[:] restarts = cols["restarts"]
        cdef StreamState* s
        for i in range(n):
            s = &self._streams[self._insert(dev[i], sid[i])]
            s.last_seq = last[i]
            for w in range(SEEN_WORDS):
                s.seen[w] = seen[i, w]
            s.max_ts_us = maxts[i]
            s.frames = frames[i]
            s.gaps = gaps[i]
            s.missing = miss[i]
            s.duplicates = dups[i]
            s.late = late[i]
            s.restarts = restarts[i]

    def totals(self):
        """Sum of each counter over all streams, plus ``streams`` (the number of streams)."""
        cdef Py_ssize_t i
        cdef uint64_t frames = 0, gaps = 0, miss = 0, dups = 0, late = 0, restarts = 0
        for i in range(self._n):
            frames += self._streams[i].frames
            gaps += self._streams[i].gaps
            miss += self._streams[i].missing
            dups += self._streams[i].duplicates
            late += self._streams[i].late
            restarts += self._streams[i].restarts
        return {
            "streams": self._n,
            "frames": frames,
            "gaps": gaps,
            "missing": miss,
            "duplicates": dups,
            "late": late,
            "restarts": restarts,
        }
