# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A socket writer thread: sends queued bytes to TCP sockets without the GIL.

On loopback a 4-byte ``send`` costs ~25 µs of the sender's CPU, because the kernel runs
the receiver's TCP input inside the sender's system call; at 10,000 acknowledgements a
second that was a quarter of the broker's event loop. :class:`SendQueue` moves those
system calls to a thread of their own: the event loop only copies the bytes into a
queue (a ``memcpy`` under a mutex) and the writer thread sends them, never taking the
GIL.

Invariants:

- The queue owns a ``dup`` of every socket attached (:meth:`SendQueue.attach`), and only
  the writer thread closes it (:meth:`SendQueue.detach`, in queue order). The descriptor
  number therefore cannot be reused for another connection while bytes for it wait, even
  if the event loop closed its own descriptor of the socket in the meantime.
- Bytes queued for one socket leave in the order queued. Once a socket is attached,
  every write to it must go through the queue (a write through another path could land
  in the middle of a partly sent packet).
- A socket that cannot take its bytes (``EAGAIN``, short write) keeps them in a pending
  buffer that the writer retries every ``retry_ms`` milliseconds. A socket whose pending
  bytes pass ``max_pending`` is *broken*: its bytes are dropped and :meth:`send` returns
  False, so that the caller closes the connection. A send error (``EPIPE``,
  ``ECONNRESET``) breaks a socket the same way.
- A socket detached with bytes still pending is closed once they are sent, or after
  ``linger_s`` seconds.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove, memset
from posix.resource cimport RLIMIT_NOFILE, getrlimit, rlimit
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, clockid_t, timespec
from posix.unistd cimport close, dup


cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    int PTHREAD_MUTEX_ADAPTIVE_NP
    int pthread_mutexattr_init(pthread_mutexattr_t *a)
    int pthread_mutexattr_settype(pthread_mutexattr_t *a, int kind)
    int pthread_mutexattr_destroy(pthread_mutexattr_t *a)
    int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_condattr_init(pthread_condattr_t *a)
    int pthread_condattr_setclock(pthread_condattr_t *a, clockid_t clock)
    int pthread_condattr_destroy(pthread_condattr_t *a)
    int pthread_cond_init(pthread_cond_t *c, const pthread_condattr_t *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_signal(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const timespec *t)


cdef enum:
    # queue entry lengths below 0 are commands
    CLOSE = -1  # close once the pending bytes are sent (or after linger_s)
    ABORT = -2  # close now, dropping pending bytes
    # per-descriptor state (the writer thread changes it, except ATTACHED at attach)
    FREE = 0
    ATTACHED = 1
    BROKEN = 2


cdef struct Queue:
    int *fd
    Py_ssize_t *len
    char *data
    Py_ssize_t n, cap, nbytes, bytes_cap


cdef struct Pending:
    char *buf
    Py_ssize_t len, cap
    double since      # monotonic s when the socket stalled (or was detached)
    bint closing      # detached: close once sent
    bint listed       # in the stalled list


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int _queue_init(Queue *q) noexcept nogil:
    q.cap = 1024
    q.bytes_cap = 64 * 1024
    q.n = q.nbytes = 0
    q.fd = <int *>malloc(q.cap * sizeof(int))
    q.len = <Py_ssize_t *>malloc(q.cap * sizeof(Py_ssize_t))
    q.data = <char *>malloc(q.bytes_cap)
    return 0 if q.fd != NULL and q.len != NULL and q.data != NULL else -1


cdef void _queue_free(Queue *q) noexcept nogil:
    free(q.fd)
    free(q.len)
    free(q.data)
    q.fd = NULL
    q.len = NULL
    q.data = NULL


cdef int _queue_push(Queue *q, int fd, const char *data, Py_ssize_t n) noexcept nogil:
    """Append one entry (n < 0: a command); -1 if out of memory."""
    cdef Py_ssize_t cap
    cdef void *p
    if q.n == q.cap:
        cap = q.cap * 2
        p = realloc(q.fd, cap * sizeof(int))
        if p == NULL:
            return -1
        q.fd = <int *>p
        p = realloc(q.len, cap * sizeof(Py_ssize_t))
        if p == NULL:
            return -1
        q.len = <Py_ssize_t *>p
        q.cap = cap
    if n > 0:
        if q.nbytes + n > q.bytes_cap:
            cap = q.bytes_cap * 2
            while q.nbytes + n > cap:
                cap *= 2
            p = realloc(q.data, cap)
            if p == NULL:
                return -1
            q.data = <char *>p
            q.bytes_cap = cap
        memcpy(q.data + q.nbytes, data, n)
        q.nbytes += n
    q.fd[q.n] = fd
    q.len[q.n] = n
    q.n += 1
    return 0


cdef class SendQueue:
    """Queue of bytes for TCP sockets, sent by a writer thread without the GIL.

    Parameters
    ----------
    max_pending : int
        Bytes a socket may leave unsent (it does not read) before it is broken (bytes).
    retry_ms : float
        How often the writer retries sockets with unsent bytes (ms).
    linger_s : float
        How long a detached socket's unsent bytes are retried before it is closed (s).

    The event loop calls :meth:`attach`, :meth:`send` and :meth:`detach`; one other
    thread runs :meth:`run` until :meth:`stop`. Counters: :meth:`stats`.
    """

    cdef pthread_mutex_t _mu
    cdef pthread_cond_t _cv
    cdef Queue _front, _back
    cdef unsigned char *_state  # per descriptor number, FREE / ATTACHED / BROKEN
    cdef Pending *_pending      # per descriptor number (writer thread only)
    cdef int *_stalled          # descriptors with pending bytes (writer thread only)
    cdef Py_ssize_t _n_stalled
    cdef int _max_fd, _reserve
    cdef bint _stopping, _waiting, _running
    cdef Py_ssize_t _max_pending
    cdef double _retry_s, _linger_s
    # counters (written by the writer thread under the mutex at the end of each round)
    cdef unsigned long long _sends, _bytes, _short_writes, _broken, _closed, _attached

    def __cinit__(self, Py_ssize_t max_pending=1 << 20, double retry_ms=2.0,
                  double linger_s=10.0):
        cdef rlimit lim
        cdef pthread_mutexattr_t attr
        cdef pthread_condattr_t cattr
        if max_pending <= 0 or retry_ms <= 0 or linger_s < 0:
            raise ValueError("max_pending and retry_ms must be > 0, linger_s >= 0")
        self._max_fd = 65536
        if getrlimit(RLIMIT_NOFILE, &lim) == 0 and lim.rlim_cur < <unsigned long long>(1 << 22):
            self._max_fd = max(<int>lim.rlim_cur, 1024)
        self._reserve = self._max_fd // 4
        self._state = <unsigned char *>calloc(self._max_fd, 1)
        self._pending = <Pending *>calloc(self._max_fd, sizeof(Pending))
        self._stalled = <int *>malloc(self._max_fd * sizeof(int))
        if (self._state == NULL or self._pending == NULL or self._stalled == NULL
                or _queue_init(&self._front) or _queue_init(&self._back)):
            raise MemoryError()
        # adaptive: the writer holds the mutex only to swap the queues, so a thread that
        # finds it taken spins briefly instead of sleeping in the kernel
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP)
        pthread_mutex_init(&self._mu, &attr)
        pthread_mutexattr_destroy(&attr)
        # timed waits against CLOCK_MONOTONIC, the clock _now() reads (the default,
        # CLOCK_REALTIME, made every deadline lie in the past: a busy retry loop)
        pthread_condattr_init(&cattr)
        pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC)
        pthread_cond_init(&self._cv, &cattr)
        pthread_condattr_destroy(&cattr)
        self._max_pending = max_pending
        self._retry_s = retry_ms / 1e3
        self._linger_s = linger_s

    def __dealloc__(self):
        cdef int fd
        if self._state != NULL and not self._running:
            for fd in range(self._max_fd):
                if self._state[fd] != FREE:
                    close(fd)
        if self._pending != NULL:
            for fd in range(self._max_fd):
                free(self._pending[fd].buf)
        free(self._state)
        free(self._pending)
        free(self._stalled)
        _queue_free(&self._front)
        _queue_free(&self._back)
        pthread_cond_destroy(&self._cv)
        pthread_mutex_destroy(&self._mu)

    # -- event-loop side -------------------------------------------------------------
    def attach(self, int fd) -> int:
        """Take a socket: returns the queue's own descriptor of it (a ``dup``), or -1
        when it cannot (no descriptor left, or the queue is stopping): keep writing to
        that socket another way."""
        cdef int own
        if self._stopping:
            return -1
        own = dup(fd)
        if own < 0:
            return -1
        if own >= self._max_fd - self._reserve:  # leave descriptors for new connections
            close(own)
            return -1
        pthread_mutex_lock(&self._mu)
        self._state[own] = ATTACHED
        self._attached += 1
        pthread_mutex_unlock(&self._mu)
        return own

    def send(self, int fd, bytes data) -> bool:
        """Queue ``data`` for the socket ``fd`` (from :meth:`attach`).

        Returns False if the socket is broken (it did not read ``max_pending`` bytes, or
        a send failed) or the queue is out of memory: close the connection.
        """
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef bint ok
        if fd < 0 or fd >= self._max_fd:
            raise ValueError(f"descriptor {fd} is not attached")
        pthread_mutex_lock(&self._mu)
        ok = self._state[fd] == ATTACHED
        if ok and n:
            ok = _queue_push(&self._front, fd, PyBytes_AS_STRING(data), n) == 0
            if ok and self._waiting:
                pthread_cond_signal(&self._cv)
        pthread_mutex_unlock(&self._mu)
        return ok

    def detach(self, int fd, bint abort=False) -> None:
        """Close the queue's descriptor ``fd`` after the bytes queued before (``abort``:
        dropping whatever is not sent yet). ``fd`` must not be used afterwards."""
        cdef int rc
        if fd < 0 or fd >= self._max_fd:
            raise ValueError(f"descriptor {fd} is not attached")
        pthread_mutex_lock(&self._mu)
        rc = _queue_push(&self._front, fd, NULL, ABORT if abort else CLOSE)
        if self._waiting:
            pthread_cond_signal(&self._cv)
        pthread_mutex_unlock(&self._mu)
        if rc:
            raise MemoryError()

    def stop(self) -> None:
        """Ask :meth:`run` to send what is queued, close every descriptor and return."""
        pthread_mutex_lock(&self._mu)
        self._stopping = True
        pthread_cond_signal(&self._cv)
        pthread_mutex_unlock(&self._mu)

    def stats(self) -> dict:
        """Counters: ``sends`` (system calls), ``bytes`` sent, ``short_writes`` (the
        socket took part or none), ``broken`` sockets, ``attached``, ``closed``,
        ``stalled`` (sockets with bytes pending now)."""
        pthread_mutex_lock(&self._mu)
        out = dict(sends=self._sends, bytes=self._bytes, short_writes=self._short_writes,
                   broken=self._broken, attached=self._attached, closed=self._closed,
                   stalled=self._n_stalled)
        pthread_mutex_unlock(&self._mu)
        return out

    # -- writer thread ---------------------------------------------------------------
    def run(self) -> None:
        """The writer loop (call it in a thread of its own); returns after :meth:`stop`,
        once the queue is sent (sockets that do not read get ``linger_s``) and every
        descriptor is closed."""
        if self._running:
            raise RuntimeError("SendQueue.run is already running")
        self._running = True
        try:
            with nogil:
                self._loop()
        finally:
            self._running = False

    cdef void _loop(self) noexcept nogil:
        cdef Queue tmp
        cdef timespec until
        cdef double t, stop_at = -1.0
        cdef Py_ssize_t queued
        cdef unsigned long long c[5]
        memset(c, 0, sizeof(c))
        while True:
            pthread_mutex_lock(&self._mu)
            self._count(c)
            while self._front.n == 0 and not (self._stopping and self._n_stalled == 0):
                self._waiting = True
                if self._n_stalled:  # retry them in retry_ms, sooner if more comes
                    t = _now() + self._retry_s
                    until.tv_sec = <long>t
                    until.tv_nsec = <long>((t - until.tv_sec) * 1e9)
                    pthread_cond_timedwait(&self._cv, &self._mu, &until)
                    break
                pthread_cond_wait(&self._cv, &self._mu)
            self._waiting = False
            tmp = self._back
            self._back = self._front
            self._front = tmp
            if self._stopping and stop_at < 0:
                stop_at = _now()
            pthread_mutex_unlock(&self._mu)
            self._send_queue(&self._back, c)
            self._back.n = self._back.nbytes = 0
            if self._n_stalled:
                self._retry_stalled(c, stop_at >= 0 and _now() - stop_at >= self._linger_s)
            if stop_at >= 0 and self._n_stalled == 0:
                pthread_mutex_lock(&self._mu)
                queued = self._front.n
                pthread_mutex_unlock(&self._mu)
                if queued == 0:
                    break
        self._close_all(c)
        pthread_mutex_lock(&self._mu)
        self._count(c)
        pthread_mutex_unlock(&self._mu)

    cdef inline void _count(self, unsigned long long *c) noexcept nogil:
        """Add the writer's round counters to the totals (mutex held)."""
        self._sends += c[0]
        self._bytes += c[1]
        self._short_writes += c[2]
        self._broken += c[3]
        self._closed += c[4]
        memset(c, 0, 5 * sizeof(unsigned long long))

    cdef void _send_queue(self, Queue *q, unsigned long long *c) noexcept nogil:
        cdef Py_ssize_t i = 0, off = 0, n
        cdef int fd
        cdef Pending *p
        while i < q.n:
            fd = q.fd[i]
            n = q.len[i]
            i += 1
            if n > 0:  # the bytes of consecutive entries for one socket: one send
                while i < q.n and q.fd[i] == fd and q.len[i] > 0:
                    n += q.len[i]
                    i += 1
            p = &self._pending[fd]
            if n == CLOSE:
                if p.len and self._state[fd] == ATTACHED:
                    p.closing = True
                    p.since = _now()  # linger from now
                else:
                    self._close(fd, c)
                continue
            if n == ABORT:
                self._close(fd, c)
                continue
            if self._state[fd] == ATTACHED:
                if p.len:
                    self._append(fd, q.data + off, n, c)
                else:
                    self._write(fd, q.data + off, n, c)
            off += n

    cdef void _write(self, int fd, const char *data, Py_ssize_t n, unsigned long long *c) noexcept nogil:
        """Send now; keep what the socket does not take."""
        cdef ssize_t r
        while True:
            r = send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT)
            if r >= 0 or errno != EINTR:
                break
        c[0] += 1
        if r == n:
            c[1] += n
            return
        if r < 0 and errno != EAGAIN:
            self._break(fd, c)  # EPIPE, ECONNRESET, ...: the reader side closes it
            return
        if r < 0:
            r = 0
        c[1] += r
        c[2] += 1
        self._append(fd, data + r, n - r, c)

    cdef void _append(self, int fd, const char *data, Py_ssize_t n, unsigned long long *c) noexcept nogil:
        cdef Pending *p = &self._pending[fd]
        cdef Py_ssize_t cap
        cdef void *b
        if p.len + n > self._max_pending:
            self._break(fd, c)
            return
        if p.len + n > p.cap:
            cap = max(p.cap * 2, p.len + n, 256)
            b = realloc(p.buf, cap)
            if b == NULL:
                self._break(fd, c)
                return
            p.buf = <char *>b
            p.cap = cap
        memcpy(p.buf + p.len, data, n)
        if p.len == 0:
            p.since = _now()
        p.len += n
        if not p.listed:
            p.listed = True
            self._stalled[self._n_stalled] = fd
            self._n_stalled += 1

    cdef void _retry_stalled(self, unsigned long long *c, bint give_up) noexcept nogil:
        """Send pending bytes again; ``give_up``: the queue stopped ``linger_s`` ago."""
        cdef Py_ssize_t i, kept = 0
        cdef int fd
        cdef Pending *p
        cdef ssize_t r
        cdef double now = _now()
        for i in range(self._n_stalled):
            fd = self._stalled[i]
            p = &self._pending[fd]
            if p.len and self._state[fd] == ATTACHED:
                r = send(fd, p.buf, p.len, MSG_NOSIGNAL | MSG_DONTWAIT)
                c[0] += 1
                if r < 0 and errno != EAGAIN and errno != EINTR:
                    self._break(fd, c)
                elif r > 0:
                    c[1] += r
                    memmove(p.buf, p.buf + r, p.len - r)
                    p.len -= r
            if p.len and (give_up or (p.closing and now - p.since > self._linger_s)):
                p.len = 0  # a socket that does not read: drop its bytes
            if p.len:
                self._stalled[kept] = fd
                kept += 1
                continue
            p.listed = False
            free(p.buf)
            p.buf = NULL
            p.cap = 0
            if p.closing:
                self._close(fd, c)
        self._n_stalled = kept

    cdef void _break(self, int fd, unsigned long long *c) noexcept nogil:
        cdef Pending *p = &self._pending[fd]
        pthread_mutex_lock(&self._mu)
        if self._state[fd] == ATTACHED:
            self._state[fd] = BROKEN
            c[3] += 1
        pthread_mutex_unlock(&self._mu)
        p.len = 0

    cdef void _close(self, int fd, unsigned long long *c) noexcept nogil:
        """Close the queue's descriptor (a listed one leaves the stalled list at the
        next retry, which frees its buffer)."""
        cdef Pending *p = &self._pending[fd]
        p.len = 0
        p.closing = False
        if not p.listed:
            free(p.buf)
            p.buf = NULL
            p.cap = 0
        pthread_mutex_lock(&self._mu)
        self._state[fd] = FREE
        pthread_mutex_unlock(&self._mu)
        close(fd)
        c[4] += 1

    cdef void _close_all(self, unsigned long long *c) noexcept nogil:
        cdef int fd
        for fd in range(self._max_fd):
            if self._state[fd] != FREE:
                self._pending[fd].listed = False
                self._close(fd, c)
        self._n_stalled = 0
