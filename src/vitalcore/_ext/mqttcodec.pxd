# cython: language_level=3
"""Declarations of the MQTT 3.1.1 / 5.0 packet codec (see mqttcodec.pyx)."""

cdef enum ParserState:
    PS_FIRST = 0    # waiting for the first byte of a packet (type and flags)
    PS_LENGTH = 1   # collecting the Remaining Length (1..4 bytes)
    PS_BODY = 2     # collecting a body that straddles fed chunks into _body
    PS_FAILED = 3   # a protocol error happened: the connection must close

cdef enum Role:
    ROLE_SERVER = 0
    ROLE_CLIENT = 1

# Bounded cursor over one packet body. Reads past ``end`` raise a Malformed Packet
# error from an out-of-line function.
cdef struct Cursor:
    const unsigned char* p
    const unsigned char* end

# Growable output buffer of the non-hot encoders (malloc'd, freed by the caller).
cdef struct WBuf:
    unsigned char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef class MqttParser:
    cdef:
        int _state
        int _role
        int _level              # 0 until known, then 4 or 5
        Py_ssize_t _max         # largest accepted packet, fixed header included
        unsigned char _first    # first byte of the packet being collected
        Py_ssize_t _rl          # Remaining Length decoded so far
        int _rl_bytes           # Remaining Length bytes seen
        unsigned char* _body    # body of a packet that straddles chunks
        Py_ssize_t _body_len
        Py_ssize_t _body_cap
        bytes _topic_raw        # last PUBLISH topic, raw and decoded (1-entry cache)
        str _topic

    cdef int _feed(self, const unsigned char* p, Py_ssize_t n, list out) except -1
    cdef int _check_first(self, unsigned char first) except -1
    cdef int _length_byte(self, unsigned char b) except -1
    cdef int _collect(self, const unsigned char* p, Py_ssize_t n) except -1
    cdef object _packet(self, unsigned char first, const unsigned char* p, Py_ssize_t n)
    cdef object _connect(self, Cursor* c)
    cdef object _connack(self, Cursor* c)
    cdef object _publish(self, unsigned char first, Cursor* c)
    cdef str _topic_name(self, const unsigned char* s, Py_ssize_t n)
    cdef object _subscribe(self, int t, Cursor* c)
    cdef object _suback(self, int t, Cursor* c)
