# Declarations of the wire-format v1 codec (see framecodec.pyx, docs/protocol.md).
from libc.stdint cimport int8_t, int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "vc_wire.h":
    void vc_crc32c_init() nogil
    uint32_t vc_crc32c(uint32_t crc, const uint8_t *p, size_t n) nogil
    uint32_t vc_crc32c_sw(uint32_t c, const uint8_t *p, size_t n) nogil
    int vc_crc32c_hw_available() nogil
    uint16_t vc_ld_u16(const uint8_t *p) nogil
    uint32_t vc_ld_u32(const uint8_t *p) nogil
    uint64_t vc_ld_u64(const uint8_t *p) nogil
    float vc_ld_f32(const uint8_t *p) nogil
    void vc_st_u16(uint8_t *p, uint16_t v) nogil
    void vc_st_u32(uint8_t *p, uint32_t v) nogil
    void vc_st_u64(uint8_t *p, uint64_t v) nogil
    void vc_st_f32(uint8_t *p, float v) nogil
    ptrdiff_t vc_undelta8(const uint8_t *p, size_t avail, int16_t *out, uint32_t n) nogil
    size_t vc_delta8(const int16_t *x, uint32_t n, uint8_t *out) nogil
    size_t vc_find_magic(const uint8_t *p, size_t start, size_t n) nogil


# Rows as the decoder writes them: packed, field for field the columns of
# vitalcore.batch.TABLES (checked at import).
cdef packed struct FrameRow:
    uint64_t device_id
    uint8_t frame_type
    uint8_t channel
    uint32_t seq
    int64_t ts_us
    int64_t raw_offset
    uint32_t raw_length

cdef packed struct WaveRow:
    uint32_t frame
    uint64_t device_id
    uint8_t frame_type
    uint8_t channel
    uint32_t seq
    int64_t ts_us
    uint16_t fs_hz
    float gain
    float offset
    int64_t sample_start
    uint32_t n_samples

cdef packed struct NumericRow:
    uint32_t frame
    uint64_t device_id
    uint32_t seq
    int64_t ts_us
    uint8_t code
    uint8_t status
    float value

cdef packed struct StatusRow:
    uint32_t frame
    uint64_t device_id
    uint32_t seq
    int64_t ts_us
    uint8_t battery
    uint8_t flags
    uint8_t carrier
    int8_t rssi
    uint16_t leads_off
    uint16_t fault
    uint32_t powered_s
    uint8_t n_accessories

cdef packed struct AccessoryRow:
    uint32_t frame
    uint64_t device_id
    int64_t ts_us
    uint8_t kind
    char serial[16]
    uint32_t powered_s

cdef packed struct AckRow:
    uint32_t frame
    uint64_t device_id
    uint32_t seq
    int64_t ts_us
    uint32_t command_id
    uint8_t kind
    uint8_t status
    uint16_t detail

cdef packed struct CommandRow:
    uint32_t frame
    uint64_t device_id
    uint32_t seq
    int64_t ts_us
    uint32_t command_id
    uint8_t kind
    uint32_t arg


# A growable array of fixed-size rows (C heap; copied out column-wise by take()).
cdef struct RowBuf:
    char *data
    size_t n
    size_t cap
    size_t size


cdef class FrameDecoder:
    cdef RowBuf _tables[7]
    cdef object _samples
    cdef int16_t *_samples_ptr
    cdef Py_ssize_t _n_samples
    cdef Py_ssize_t _cap_samples
    cdef object _raw
    cdef uint8_t *_raw_ptr
    cdef Py_ssize_t _n_raw
    cdef Py_ssize_t _cap_raw
    cdef Py_ssize_t _last_samples
    cdef Py_ssize_t _last_raw
    cdef int64_t _batch_rejects[9]
    cdef int64_t _rejects[9]
    cdef Py_ssize_t _keep
    cdef readonly object rejected_frames
    cdef readonly uint64_t accepted_frames
    cdef readonly uint64_t unknown_codes

    cdef int _reserve_samples(self, Py_ssize_t extra) except -1
    cdef int _reserve_raw(self, Py_ssize_t extra) except -1
    cdef int _reject(self, int reason, const uint8_t *p, size_t n, uint64_t dev) except -1
    cdef Py_ssize_t _feed(self, const uint8_t *buf, size_t n, uint64_t device_id) except -1
    cdef int _frame(self, const uint8_t *p, size_t total, uint64_t expect) except -1
