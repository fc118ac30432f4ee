# cython: language_level=3
"""Wire-format v1 frame codec (see docs/protocol.md).

``FrameDecoder.feed`` walks a buffer of concatenated frames in one C loop, validates
each frame (magic, version, length, CRC-32C, type, value ranges) and appends it to
packed row buffers; ``take`` hands the rows over as numpy columns (a
:class:`vitalcore.batch.DecodedBatch`). No Python object is made per frame or per
sample on the accepting path; a rejected frame costs one Python call (counting it and
keeping its bytes in a bounded ring for inspection).

The encoders build frames byte for byte like :mod:`vitalcore._refcodec`.
"""

from collections import deque

import numpy as np

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

from vitalcore import protocol as _P
from vitalcore.batch import TABLES as _TABLES
from vitalcore.batch import DecodedBatch
from vitalcore.errors import UsageError
from vitalcore import _refcodec as _ref



# reject reasons (vitalcore.protocol.RejectReason)

# table indices, in vitalcore.batch.TABLES order

cdef enum:
    HEADER_SIZE = 28
    MIN_FRAME = 32
    MAX_PAYLOAD = 16384
    WAVE_HEADER = 16
    MAX_SAMPLES = 8192
    MAX_FS = 4000
    MAX_NUMERICS = 64
    STATUS_HEADER = 16
    ACCESSORY_SIZE = 24
    MAX_ACCESSORIES = 16
    ACK_SIZE = 8
    COMMAND_SIZE = 12
    T_ECG = 0x01
    T_PLETH = 0x02
    T_CUFF = 0x03
    T_NUMERICS = 0x10
    T_STATUS = 0x20
    T_ACK = 0x30
    T_COMMAND = 0x40
    R_BAD_MAGIC = 0
    R_TRUNCATED = 1
    R_BAD_VERSION = 2
    R_LENGTH = 3
    R_CHECKSUM = 4
    R_UNKNOWN_TYPE = 5
    R_VALUE_RANGE = 6
    R_DEVICE_MISMATCH = 7
    R_BAD_JSON = 8
    N_REASONS = 9
    ACCEPTED = 100
    TB_FRAMES = 0
    TB_WAVES = 1
    TB_NUMERICS = 2
    TB_STATUS = 3
    TB_ACCESSORIES = 4
    TB_ACKS = 5
    TB_COMMANDS = 6
    N_TABLES = 7

cdef int64_t TS_MIN = 946684800000000  # 2000-01-01T00:00:00Z in µs
cdef int64_t TS_MAX = 4102444800000000  # 2100-01-01T00:00:00Z in µs

vc_crc32c_init()

_TABLE_NAMES = tuple(_TABLES)
_ROW_DTYPES = tuple(np.dtype(list(cols)) for cols in _TABLES.values())
cdef size_t[7] _ROW_SIZES
_ROW_SIZES[:] = [sizeof(FrameRow), sizeof(WaveRow), sizeof(NumericRow), sizeof(StatusRow),
                 sizeof(AccessoryRow), sizeof(AckRow), sizeof(CommandRow)]
for _i, _dt in enumerate(_ROW_DTYPES):
    if _dt.itemsize != _ROW_SIZES[_i]:
        raise ImportError(f"vitalcore._ext.framecodec: row layout of {_TABLE_NAMES[_i]} "
                          f"({_ROW_SIZES[_i]} bytes) differs from vitalcore.batch.TABLES")
if _TABLE_NAMES != ("frames", "waveforms", "numerics", "status", "accessories", "acks",
                    "commands") or len(_P.REJECT_REASONS) != N_REASONS:
    raise ImportError("vitalcore._ext.framecodec is out of step with vitalcore.protocol/batch")

# numeric code -> accepted range, from vitalcore.protocol (the single source of truth)
cdef double _num_lo[256]
cdef double _num_hi[256]
cdef bint _num_known[256]
for _c in range(256):
    _num_known[_c] = _c in _P.NUMERIC_RANGES
    _num_lo[_c], _num_hi[_c] = _P.NUMERIC_RANGES.get(_c, (0.0, 0.0))

cdef uint8_t _channel_max(uint8_t ftype) noexcept nogil:
    if ftype == T_ECG:
        return 11
    if ftype == T_PLETH:
        return 1
    return 0


def crc32c(data, uint32_t crc=0):
    """CRC-32C (Castagnoli) of a buffer, continuing from ``crc`` (0 to start)."""
    cdef const uint8_t[::1] mv = memoryview(data).cast("B")
    if mv.shape[0] == 0:
        return crc
    return vc_crc32c(crc, &mv[0], mv.shape[0])


def _crc32c_portable(data, uint32_t crc=0):
    """CRC-32C by the table method, whatever the CPU (for tests of both paths)."""
    cdef const uint8_t[::1] mv = memoryview(data).cast("B")
    if mv.shape[0] == 0:
        return crc
    return vc_crc32c_sw(crc ^ 0xFFFFFFFF, &mv[0], mv.shape[0]) ^ 0xFFFFFFFF


def crc32c_hardware():
    """True if CRC-32C runs on the CPU's crc32 instruction (SSE4.2)."""
    return bool(vc_crc32c_hw_available())


cdef object _grown(object arr, Py_ssize_t used, Py_ssize_t extra, Py_ssize_t minimum):
    """A larger array of arr's dtype holding its first ``used`` items (capacity doubles)."""
    new = np.empty(max(2 * arr.shape[0], used + extra, minimum), arr.dtype)
    new[:used] = arr[:used]
    return new


cdef inline char *_push(RowBuf *b) except NULL:
    cdef size_t cap
    cdef char *data
    if b.n == b.cap:
        cap = b.cap * 2 if b.cap else 256
        data = <char *>realloc(b.data, cap * b.size)
        if data == NULL:
            raise MemoryError()
        b.data = data
        b.cap = cap
    b.n += 1
    return b.data + (b.n - 1) * b.size


cdef class FrameDecoder:
    """Decoder of wire-format v1 frames into columns.

    Parameters
    ----------
    keep_rejects : int, default 64
        How many rejected frames (reason, device id, bytes) to keep for inspection in
        :attr:`rejected_frames`; older ones are dropped from the ring (still counted).

    Notes
    -----
    ``feed(buf, device_id=0)`` decodes every frame in ``buf`` (any buffer-protocol
    object of bytes) and appends the accepted ones to the pending batch; a non-zero
    ``device_id`` rejects frames of any other device (DEVICE_MISMATCH). ``take()``
    returns the pending :class:`~vitalcore.batch.DecodedBatch` and starts a new one.
    Never raises on bad input: every malformed frame is counted per reason and
    decoding resumes at the next frame.
    """

    def __cinit__(self, Py_ssize_t keep_rejects=64):
        cdef int t
        for t in range(N_TABLES):
            self._tables[t].data = NULL
            self._tables[t].n = 0
            self._tables[t].cap = 0
            self._tables[t].size = _ROW_SIZES[t]
        for t in range(N_REASONS):
            self._batch_rejects[t] = 0
            self._rejects[t] = 0

    def __init__(self, Py_ssize_t keep_rejects=64):
        if keep_rejects < 0:
            raise UsageError("keep_rejects must be >= 0")
        self._keep = keep_rejects
        self.rejected_frames = deque(maxlen=keep_rejects or None)
        self._samples = np.empty(0, np.int16)
        self._samples_ptr = NULL
        self._n_samples = self._cap_samples = 0
        self._raw = np.empty(0, np.uint8)
        self._raw_ptr = NULL
        self._n_raw = self._cap_raw = 0
        self._last_samples = self._last_raw = 0

    def __dealloc__(self):
        cdef int t
        for t in range(N_TABLES):
            free(self._tables[t].data)

    @property
    def reject_counts(self):
        """Rejected frames per reason since creation (int64 array, RejectReason order)."""
        return np.array([self._rejects[i] for i in range(N_REASONS)], np.int64)

    def stats(self):
        """Counters since creation: accepted frames, rejects by reason, unknown codes."""
        return {
            "accepted_frames": self.accepted_frames,
            "rejected": {_P.REJECT_REASONS[i]: self._rejects[i] for i in range(N_REASONS)},
            "unknown_numeric_codes": self.unknown_codes,
        }

    # A new batch's arrays start at the size of the last batch plus a quarter: under a
    # steady load a batch is allocated once instead of doubled (and copied) several
    # times (feed + take of 2,048 one-tick messages: 1.29x faster).
    cdef int _reserve_samples(self, Py_ssize_t extra) except -1:
        cdef int16_t[::1] view
        if self._n_samples + extra > self._cap_samples:
            self._samples = view = _grown(self._samples, self._n_samples, extra,
                                          max(65536, self._last_samples * 5 // 4))
            self._cap_samples = view.shape[0]
            self._samples_ptr = &view[0]
        return 0

    cdef int _reserve_raw(self, Py_ssize_t extra) except -1:
        cdef uint8_t[::1] view
        if self._n_raw + extra > self._cap_raw:
            self._raw = view = _grown(self._raw, self._n_raw, extra,
                                      max(262144, self._last_raw * 5 // 4))
            self._cap_raw = view.shape[0]
            self._raw_ptr = &view[0]
        return 0

    cdef int _reject(self, int reason, const uint8_t *p, size_t n, uint64_t dev) except -1:
        self._batch_rejects[reason] += 1
        self._rejects[reason] += 1
        if self._keep:
            if n > MIN_FRAME + MAX_PAYLOAD:
                n = MIN_FRAME + MAX_PAYLOAD
            self.rejected_frames.append((reason, dev, PyBytes_FromStringAndSize(<const char *>p, n)))
        return 0

    def count_reject(self, int reason, data, uint64_t device_id=0):
        """Count (and keep) a reject found by a companion parser, e.g. the JSON one."""
        if not 0 <= reason < N_REASONS:
            raise UsageError(f"unknown reject reason {reason}")
        cdef bytes b = bytes(data)
        self._reject(reason, <const uint8_t *>PyBytes_AS_STRING(b), len(b), device_id)

    def feed(self, data, uint64_t device_id=0):
        """Decode all frames in ``data``; return how many were accepted."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._feed(<const uint8_t *>view.buf, <size_t>view.len, device_id)
        finally:
            PyBuffer_Release(&view)

    cdef Py_ssize_t _feed(self, const uint8_t *buf, size_t n, uint64_t device_id) except -1:
        cdef size_t pos = 0, q, total, end
        cdef uint32_t plen
        cdef int r
        cdef uint64_t accepted = 0
        while pos < n:
            if n - pos < 2 or buf[pos] != 0x56 or buf[pos + 1] != 0x43:
                if n - pos == 1 and buf[pos] == 0x56:
                    self._reject(R_TRUNCATED, buf + pos, 1, 0)
                    break
                q = vc_find_magic(buf, pos + 1, n)
                self._reject(R_BAD_MAGIC, buf + pos, q - pos, 0)
                pos = q
                continue
            if n - pos < HEADER_SIZE:
                self._reject(R_TRUNCATED, buf + pos, n - pos, 0)
                break
            plen = vc_ld_u16(buf + pos + 6)
            total = MIN_FRAME + plen
            if buf[pos + 2] != 1:
                r = R_BAD_VERSION
            elif plen > MAX_PAYLOAD:
                r = R_LENGTH
            elif pos + total > n:
                r = R_TRUNCATED
            else:
                end = pos + total
                if vc_crc32c(0, buf + pos, total - 4) == vc_ld_u32(buf + end - 4):
                    r = self._frame(buf + pos, total, device_id)
                    if r == ACCEPTED:
                        accepted += 1
                    else:
                        self._reject(r, buf + pos, total, vc_ld_u64(buf + pos + 8))
                    pos = end
                    continue
                r = R_CHECKSUM
            # Resynchronise on the next magic after this frame's start: a corrupt length
            # field must not make us skip a good frame that follows.
            q = vc_find_magic(buf, pos + 1, n)
            self._reject(r, buf + pos, q - pos, 0)
            pos = q
        self.accepted_frames += accepted
        return accepted

    cdef int _frame(self, const uint8_t *p, size_t total, uint64_t expect) except -1:
        """Decode one frame whose CRC matched; return ACCEPTED or a reject reason."""
        cdef uint8_t ftype = p[4]
        cdef bint exact = p[3] == 0
        cdef uint64_t dev = vc_ld_u64(p + 8)
        cdef uint32_t seq = vc_ld_u32(p + 16)
        cdef int64_t ts = <int64_t>vc_ld_u64(p + 20)
        cdef const uint8_t *pl = p + HEADER_SIZE
        cdef size_t plen = total - MIN_FRAME, need, avail
        cdef uint32_t fi = <uint32_t>self._tables[TB_FRAMES].n
        cdef uint8_t channel = 0, enc, count, code, status, nacc, battery, k
        cdef uint16_t fs, ns
        cdef float gain, off, value
        cdef ptrdiff_t used
        cdef uint32_t unknown = 0
        cdef const uint8_t *e
        cdef WaveRow *w
        cdef NumericRow *nr
        cdef StatusRow *sr
        cdef AccessoryRow *ar
        cdef AckRow *kr
        cdef CommandRow *cr
        cdef FrameRow *fr

        if not (ftype == T_ECG or ftype == T_PLETH or ftype == T_CUFF or ftype == T_NUMERICS
                or ftype == T_STATUS or ftype == T_ACK or ftype == T_COMMAND):
            return R_UNKNOWN_TYPE
        if dev == 0 or ts < TS_MIN or ts >= TS_MAX:
            return R_VALUE_RANGE
        if expect != 0 and dev != expect:
            return R_DEVICE_MISMATCH

        if ftype == T_ECG or ftype == T_PLETH or ftype == T_CUFF:
            if plen < WAVE_HEADER:
                return R_LENGTH
            channel = pl[0]
            enc = pl[1]
            fs = vc_ld_u16(pl + 2)
            ns = vc_ld_u16(pl + 4)
            gain = vc_ld_f32(pl + 8)
            off = vc_ld_f32(pl + 12)
            if (channel > _channel_max(ftype) or enc > 1 or fs < 1 or fs > MAX_FS or ns < 1
                    or ns > MAX_SAMPLES or not isfinite(gain) or gain == 0.0 or not isfinite(off)):
                return R_VALUE_RANGE
            avail = plen - WAVE_HEADER
            self._reserve_samples(ns)
            if enc == 0:
                need = 2 * <size_t>ns
                if avail < need or (exact and avail != need):
                    return R_LENGTH
                _copy_raw16(pl + WAVE_HEADER, self._samples_ptr + self._n_samples, ns)
            else:
                used = vc_undelta8(pl + WAVE_HEADER, avail, self._samples_ptr + self._n_samples, ns)
                if used < 0 or (exact and <size_t>used != avail):
                    return R_LENGTH
            w = <WaveRow *>_push(&self._tables[TB_WAVES])
            w.frame = fi
            w.device_id = dev
            w.frame_type = ftype
            w.channel = channel
            w.seq = seq
            w.ts_us = ts
            w.fs_hz = fs
            w.gain = gain
            w.offset = off
            w.sample_start = self._n_samples
            w.n_samples = ns
            self._n_samples += ns

        elif ftype == T_NUMERICS:
            if plen < 4:
                return R_LENGTH
            count = pl[0]
            if count < 1 or count > MAX_NUMERICS:
                return R_VALUE_RANGE
            need = 4 + 8 * <size_t>count
            if plen < need or (exact and plen != need):
                return R_LENGTH
            for k in range(count):  # validate every entry before writing any row
                e = pl + 4 + 8 * k
                status = e[1]
                if status > 2:
                    return R_VALUE_RANGE
                code = e[0]
                if not _num_known[code]:
                    unknown += 1
                elif status != 2:
                    value = vc_ld_f32(e + 4)
                    if not (isfinite(value) and _num_lo[code] <= value <= _num_hi[code]):
                        return R_VALUE_RANGE
            for k in range(count):
                e = pl + 4 + 8 * k
                code = e[0]
                if not _num_known[code]:
                    continue
                nr = <NumericRow *>_push(&self._tables[TB_NUMERICS])
                nr.frame = fi
                nr.device_id = dev
                nr.seq = seq
                nr.ts_us = ts
                nr.code = code
                nr.status = e[1]
                nr.value = float("nan") if e[1] == 2 else vc_ld_f32(e + 4)
            self.unknown_codes += unknown

        elif ftype == T_STATUS:
            if plen < STATUS_HEADER:
                return R_LENGTH
            battery = pl[0]
            nacc = pl[12]
            if nacc > MAX_ACCESSORIES or (battery > 100 and battery != 255):
                return R_VALUE_RANGE
            need = STATUS_HEADER + ACCESSORY_SIZE * <size_t>nacc
            if plen < need or (exact and plen != need):
                return R_LENGTH
            for k in range(nacc):
                if not _valid_serial(pl + STATUS_HEADER + ACCESSORY_SIZE * k + 4):
                    return R_VALUE_RANGE
            sr = <StatusRow *>_push(&self._tables[TB_STATUS])
            sr.frame = fi
            sr.device_id = dev
            sr.seq = seq
            sr.ts_us = ts
            sr.battery = battery
            sr.flags = pl[1]
            sr.carrier = pl[2]
            sr.rssi = <int8_t>pl[3]
            sr.leads_off = vc_ld_u16(pl + 4)
            sr.fault = vc_ld_u16(pl + 6)
            sr.powered_s = vc_ld_u32(pl + 8)
            sr.n_accessories = nacc
            for k in range(nacc):
                e = pl + STATUS_HEADER + ACCESSORY_SIZE * k
                ar = <AccessoryRow *>_push(&self._tables[TB_ACCESSORIES])
                ar.frame = fi
                ar.device_id = dev
                ar.ts_us = ts
                ar.kind = e[0]
                memcpy(ar.serial, e + 4, 16)
                ar.powered_s = vc_ld_u32(e + 20)

        elif ftype == T_ACK:
            if plen < ACK_SIZE or (exact and plen != ACK_SIZE):
                return R_LENGTH
            if pl[5] > 4:
                return R_VALUE_RANGE
            kr = <AckRow *>_push(&self._tables[TB_ACKS])
            kr.frame = fi
            kr.device_id = dev
            kr.seq = seq
            kr.ts_us = ts
            kr.command_id = vc_ld_u32(pl)
            kr.kind = pl[4]
            kr.status = pl[5]
            kr.detail = vc_ld_u16(pl + 6)

        else:  # T_COMMAND
            if plen < COMMAND_SIZE or (exact and plen != COMMAND_SIZE):
                return R_LENGTH
            cr = <CommandRow *>_push(&self._tables[TB_COMMANDS])
            cr.frame = fi
            cr.device_id = dev
            cr.seq = seq
            cr.ts_us = ts
            cr.command_id = vc_ld_u32(pl)
            cr.kind = pl[4]
            cr.arg = vc_ld_u32(pl + 8)

        fr = <FrameRow *>_push(&self._tables[TB_FRAMES])
        fr.device_id = dev
        fr.frame_type = ftype
        fr.channel = channel
        fr.seq = seq
        fr.ts_us = ts
        fr.raw_offset = self._n_raw
        fr.raw_length = <uint32_t>total
        self._reserve_raw(total)
        memcpy(self._raw_ptr + self._n_raw, p, total)
        self._n_raw += total
        return ACCEPTED

    def take(self):
        """Return the pending batch and start a new, empty one."""
        cdef int t
        cdef RowBuf *b
        cdef char[::1] rows
        tables = {}
        for t in range(N_TABLES):
            b = &self._tables[t]
            if b.n:
                rows = <char[:b.n * b.size]> b.data
                arr = np.frombuffer(rows, dtype=_ROW_DTYPES[t])
                # .copy(), not ascontiguousarray: a 1-row field view already counts as
                # contiguous and would alias the row buffer that the next feed reuses
                tables[_TABLE_NAMES[t]] = {name: arr[name].copy() for name in arr.dtype.names}
            else:
                tables[_TABLE_NAMES[t]] = {name: np.empty(0, _ROW_DTYPES[t][name])
                                          for name in _ROW_DTYPES[t].names}
            b.n = 0
        samples = self._samples[: self._n_samples]
        raw = self._raw[: self._n_raw]
        rejects = np.array([self._batch_rejects[t] for t in range(N_REASONS)], np.int64)
        for t in range(N_REASONS):
            self._batch_rejects[t] = 0
        # the arrays now belong to the batch; the next feed allocates fresh ones
        self._last_samples = self._n_samples
        self._last_raw = self._n_raw
        self._samples = np.empty(0, np.int16)
        self._samples_ptr = NULL
        self._n_samples = self._cap_samples = 0
        self._raw = np.empty(0, np.uint8)
        self._raw_ptr = NULL
        self._n_raw = self._cap_raw = 0
        return DecodedBatch(tables, samples, raw, rejects)

    def decode(self, data, uint64_t device_id=0):
        """``feed`` then ``take``: decode one buffer into a batch of its own."""
        self.feed(data, device_id)
        return self.take()


cdef inline void _copy_raw16(const uint8_t *src, int16_t *dst, uint32_t n) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        dst[i] = <int16_t>vc_ld_u16(src + 2 * i)


cdef inline bint _valid_serial(const uint8_t *s) noexcept nogil:
    """ASCII printable text of 1..16 characters, then NUL padding only."""
    cdef int i = 0
    while i < 16 and s[i] != 0:
        if s[i] < 0x20 or s[i] > 0x7E:
            return False
        i += 1
    if i == 0:
        return False
    while i < 16:
        if s[i] != 0:
            return False
        i += 1
    return True


# ------------------------------------------------------------------------------ encoding
# Arguments are validated by the reference codec's check_* functions (one definition of
# what is encodable); the bytes are assembled here in C.

cdef bytes _new_frame(uint8_t ftype, device_id, seq, ts_us, size_t plen, uint8_t **payload):
    _ref.check_header(device_id, seq, ts_us, plen)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MIN_FRAME + plen)
    cdef uint8_t *o = <uint8_t *>PyBytes_AS_STRING(out)
    o[0] = 0x56
    o[1] = 0x43
    o[2] = 1
    o[3] = 0
    o[4] = ftype
    o[5] = 0
    vc_st_u16(o + 6, <uint16_t>plen)
    vc_st_u64(o + 8, <uint64_t>device_id)
    vc_st_u32(o + 16, <uint32_t>seq)
    vc_st_u64(o + 20, <uint64_t><int64_t>ts_us)
    payload[0] = o + HEADER_SIZE
    return out


cdef inline bytes _seal(bytes out):
    cdef uint8_t *o = <uint8_t *>PyBytes_AS_STRING(out)
    cdef size_t n = len(out) - 4
    vc_st_u32(o + n, vc_crc32c(0, o, n))
    return out


def encode_waveform(int frame_type, device_id, seq, ts_us, int channel, samples, int fs_hz,
                    gain, offset=0.0, int encoding=1):
    """Encode one waveform frame (ECG, PLETH or CUFF) of raw int16 ``samples``.

    ``ts_us`` is the device time of the first sample (µs since the Unix epoch); the
    physical value is ``raw * gain + offset`` (µV for ECG, mmHg for CUFF, arbitrary
    units for PLETH). ``encoding`` 0 = RAW16, 1 = DELTA8.
    """
    a, g, o = _ref.check_waveform(frame_type, channel, samples, fs_hz, gain, offset, encoding)
    cdef const int16_t[::1] x = a
    cdef uint32_t n = x.shape[0]
    cdef uint8_t *pl
    cdef uint8_t *tmp
    cdef size_t used
    cdef bytes out
    if encoding == 0:
        out = _new_frame(frame_type, device_id, seq, ts_us, WAVE_HEADER + 2 * n, &pl)
        _store_raw16(&x[0], pl + WAVE_HEADER, n)
    else:
        tmp = <uint8_t *>malloc(3 * n)
        if tmp == NULL:
            raise MemoryError()
        try:
            used = vc_delta8(&x[0], n, tmp)
            out = _new_frame(frame_type, device_id, seq, ts_us, WAVE_HEADER + used, &pl)
            memcpy(pl + WAVE_HEADER, tmp, used)
        finally:
            free(tmp)
    pl[0] = channel
    pl[1] = encoding
    vc_st_u16(pl + 2, fs_hz)
    vc_st_u16(pl + 4, n)
    vc_st_u16(pl + 6, 0)
    vc_st_f32(pl + 8, g)
    vc_st_f32(pl + 12, o)
    return _seal(out)


def encode_numerics(device_id, seq, ts_us, entries):
    """Encode a numerics frame from ``(code, value[, status])`` entries (units per code)."""
    rows = _ref.check_numerics(entries)
    cdef uint8_t *pl
    cdef uint8_t *e
    cdef Py_ssize_t k
    out = _new_frame(T_NUMERICS, device_id, seq, ts_us, 4 + 8 * len(rows), &pl)
    pl[0] = len(rows)
    pl[1] = pl[2] = pl[3] = 0
    for k, (code, status, value) in enumerate(rows):
        e = pl + 4 + 8 * k
        e[0] = code
        e[1] = status
        vc_st_u16(e + 2, 0)
        vc_st_f32(e + 4, value)
    return _seal(out)


def encode_status(device_id, seq, ts_us, *, int battery=255, int flags=0, int carrier=0,
                  int rssi=-128, int leads_off=0, int fault=0, powered_s=0, accessories=()):
    """Encode a device status frame (battery %, rssi dBm, powered-on seconds)."""
    acc = _ref.check_status(battery, flags, carrier, rssi, leads_off, fault, powered_s,
                            accessories)
    cdef uint8_t *pl
    cdef uint8_t *e
    cdef Py_ssize_t k
    cdef bytes serial
    out = _new_frame(T_STATUS, device_id, seq, ts_us, STATUS_HEADER + ACCESSORY_SIZE * len(acc),
                     &pl)
    pl[0] = battery
    pl[1] = flags
    pl[2] = carrier
    pl[3] = <uint8_t><int8_t>rssi
    vc_st_u16(pl + 4, leads_off)
    vc_st_u16(pl + 6, fault)
    vc_st_u32(pl + 8, powered_s)
    pl[12] = len(acc)
    pl[13] = pl[14] = pl[15] = 0
    for k, (kind, serial, hours) in enumerate(acc):
        e = pl + STATUS_HEADER + ACCESSORY_SIZE * k
        memset(e, 0, ACCESSORY_SIZE)
        e[0] = kind
        memcpy(e + 4, <const char *>serial, len(serial))
        vc_st_u32(e + 20, hours)
    return _seal(out)


def encode_ack(device_id, seq, ts_us, command_id, kind, status, detail=0):
    """Encode a command acknowledgement (device to server)."""
    _ref.check_ack(command_id, kind, status, detail)
    cdef uint8_t *pl
    out = _new_frame(T_ACK, device_id, seq, ts_us, ACK_SIZE, &pl)
    vc_st_u32(pl, command_id)
    pl[4] = kind
    pl[5] = status
    vc_st_u16(pl + 6, detail)
    return _seal(out)


def encode_command(device_id, seq, ts_us, command_id, kind, arg=0):
    """Encode a command (server to device)."""
    _ref.check_command(command_id, kind, arg)
    cdef uint8_t *pl
    out = _new_frame(T_COMMAND, device_id, seq, ts_us, COMMAND_SIZE, &pl)
    vc_st_u32(pl, command_id)
    pl[4] = kind
    pl[5] = pl[6] = pl[7] = 0
    vc_st_u32(pl + 8, arg)
    return _seal(out)


cdef inline void _store_raw16(const int16_t *src, uint8_t *dst, uint32_t n) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        vc_st_u16(dst + 2 * i, <uint16_t>src[i])
