# Declarations of the per-stream sequence tracker (see streamtab.pyx, docs/storage.md).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


# Verdicts, the values of vitalcore._ext.streamtab.Verdict.
cdef enum:
    V_NEW = 0
    V_GAP = 1
    V_DUPLICATE = 2
    V_LATE = 3
    V_RESTART = 4

# Width of the "already seen" window behind the newest sequence number, in bits, and
# the 64-bit words that hold it.
cdef enum:
    SEEN_WINDOW = 1024
    SEEN_WORDS = 16

# State of one stream (device id, stream id); the dense index of a stream is its
# position in StreamTable._streams and never changes while the table lives.
ctypedef struct StreamState:
    uint64_t device_id
    uint64_t seen[SEEN_WORDS]  # bit k (word k // 64, bit k % 64) set: seq (last_seq - k)
                               # was accepted; bit 0 is last_seq
    int64_t max_ts_us      # newest device timestamp accepted in the current epoch
    uint64_t frames        # accepted frames (NEW + GAP + LATE + RESTART)
    uint64_t gaps          # GAP verdicts
    uint64_t missing       # sequence numbers skipped by gaps, summed
    uint64_t duplicates    # DUPLICATE verdicts
    uint64_t late          # LATE verdicts
    uint64_t restarts      # RESTART verdicts
    uint32_t last_seq      # newest sequence number (serial-number order)
    uint16_t stream_id


cdef class StreamTable:
    cdef StreamState* _streams
    cdef Py_ssize_t _n          # streams in use
    cdef Py_ssize_t _cap        # streams allocated
    cdef int32_t* _slots        # open addressing: -1 empty, else dense index
    cdef uint64_t _slot_mask    # number of slots - 1 (a power of two)

    cdef int _reserve(self, Py_ssize_t n_streams) except -1
    cdef Py_ssize_t _find(self, uint64_t device_id, uint16_t stream_id) noexcept nogil
    cdef int32_t _insert(self, uint64_t device_id, uint16_t stream_id) noexcept nogil
    cdef void _clear(self) noexcept
