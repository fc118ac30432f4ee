"""The send queue's writer thread, on real loopback TCP sockets: order, a peer that does
not read, descriptors kept until their bytes are sent, stop and linger."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore._ext.sendq import SendQueue


@pytest.fixture
def queue():
    """A running queue (small limits), stopped and joined at the end."""
    q = SendQueue(max_pending=64 * 1024, retry_ms=1.0, linger_s=0.3)
    t = threading.Thread(target=q.run, daemon=True)
    t.start()
    yield q
    q.stop()
    t.join(5)
    assert not t.is_alive(), "the writer thread did not stop"


def tcp_pair(rcvbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of a loopback TCP connection, the server side
    non-blocking as an event loop's."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        c = socket.socket()
        if rcvbuf is not None:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.connect(ls.getsockname())
        s, _ = ls.accept()
    if rcvbuf is not None:  # small kernel buffers on both sides: bytes wait in the queue
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    s.setblocking(False)
    c.settimeout(5)
    return s, c


def recv_exactly(c: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = c.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def wait(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=60))
def test_bytes_arrive_complete_and_in_order(queue, chunks):
    s, c = tcp_pair()
    fd = queue.attach(s.fileno())
    assert fd >= 0 and fd != s.fileno()
    for chunk in chunks:
        assert queue.send(fd, chunk)
    expected = b"".join(chunks)
    assert recv_exactly(c, len(expected)) == expected
    queue.detach(fd)
    s.close()
    assert c.recv(1) == b""  # both descriptors closed: EOF
    c.close()


def test_many_sockets_interleaved_keep_their_own_order(queue):
    pairs = [tcp_pair() for _ in range(20)]
    fds = [queue.attach(s.fileno()) for s, _ in pairs]
    for i in range(200):
        for k, fd in enumerate(fds):
            assert queue.send(fd, b"%02d:%04d;" % (k, i))
    for k, (s, c) in enumerate(pairs):
        expected = b"".join(b"%02d:%04d;" % (k, i) for i in range(200))
        assert recv_exactly(c, len(expected)) == expected
        queue.detach(fds[k])
        s.close()
        c.close()


def test_a_peer_that_does_not_read_is_broken_and_others_go_on(queue):
    stuck_s, stuck_c = tcp_pair(rcvbuf=4096)
    ok_s, ok_c = tcp_pair()
    stuck, ok = queue.attach(stuck_s.fileno()), queue.attach(ok_s.fileno())
    block = b"z" * 16384
    sent = 0
    while queue.send(stuck, block):  # kernel buffers, then 64 kB pending, then broken
        sent += 1
        assert sent < 10_000, "never broken"
        time.sleep(0.001)
    assert queue.stats()["broken"] == 1
    assert not queue.send(stuck, b"more")  # stays broken
    assert queue.send(ok, b"still fine")
    assert recv_exactly(ok_c, 10) == b"still fine"
    queue.detach(stuck, abort=True)
    queue.detach(ok)
    for sock in (stuck_s, stuck_c, ok_s, ok_c):
        sock.close()


def test_short_writes_are_retried_when_the_peer_reads_again(queue):
    s, c = tcp_pair(rcvbuf=4096)
    fd = queue.attach(s.fileno())
    payload = bytes(range(256)) * 200  # 51.2 kB: more than the socket buffers, under the cap
    for i in range(0, len(payload), 1000):
        assert queue.send(fd, payload[i:i + 1000])
    wait(lambda: queue.stats()["stalled"] == 1)
    assert recv_exactly(c, len(payload)) == payload
    wait(lambda: queue.stats()["stalled"] == 0)
    assert queue.stats()["short_writes"] >= 1
    queue.detach(fd)
    s.close()
    c.close()


def test_a_descriptor_number_is_not_reused_while_its_bytes_wait(queue):
    """The event loop closes its own descriptor (a reset, an abort) while bytes for the
    socket still wait; a new connection then gets that number. The bytes still go to
    the first peer only, and the first peer sees EOF only after them."""
    s1, c1 = tcp_pair(rcvbuf=4096)
    fd = queue.attach(s1.fileno())
    data = b"A" * 40_000  # part of it waits in the queue's pending buffer
    assert queue.send(fd, data)
    old_number = s1.fileno()
    s1.close()  # what the event loop does; the queue's dup keeps the socket open
    reuse = socket.socket()  # a new connection gets the number at once
    assert reuse.fileno() == old_number
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        reuse.connect(ls.getsockname())
        peer, _ = ls.accept()
    queue.detach(fd)  # the connection ends after its queued bytes
    assert recv_exactly(c1, len(data)) == data
    assert c1.recv(1) == b""
    peer.settimeout(0.2)
    with pytest.raises(TimeoutError):
        peer.recv(1)  # nothing leaked into the new connection
    for sock in (c1, reuse, peer):
        sock.close()


def stalled(queue) -> tuple[int, socket.socket]:
    """A socket with 60 kB queued that its peer does not read, the event loop's own
    descriptor already closed: (the queue's descriptor, the peer)."""
    s, c = tcp_pair(rcvbuf=4096)
    fd = queue.attach(s.fileno())
    assert queue.send(fd, b"q" * 60_000)
    wait(lambda: queue.stats()["stalled"] == 1)
    s.close()
    return fd, c


def test_a_stalled_socket_is_retried_every_retry_ms_not_in_a_busy_loop(queue):
    """The writer sleeps ``retry_ms`` (1 ms here) between retries of a socket that does
    not read: over 0.5 s that is at most a few hundred send calls, not millions."""
    s, c = tcp_pair(rcvbuf=4096)
    fd = queue.attach(s.fileno())
    assert queue.send(fd, b"q" * 60_000)
    wait(lambda: queue.stats()["stalled"] == 1)
    before = queue.stats()["sends"]
    time.sleep(0.5)
    assert queue.stats()["sends"] - before <= 1000
    queue.detach(fd, abort=True)
    s.close()
    c.close()


def test_a_detached_socket_that_does_not_read_is_closed_after_linger(queue):
    fd, c = stalled(queue)
    queue.detach(fd)
    t0 = time.monotonic()
    wait(lambda: queue.stats()["closed"] == 1, timeout=3.0)
    assert time.monotonic() - t0 >= 0.25  # linger_s = 0.3 s
    c.close()


def test_abort_drops_what_waits_and_closes_at_once(queue):
    fd, c = stalled(queue)
    queue.detach(fd, abort=True)
    wait(lambda: queue.stats()["closed"] == 1, timeout=0.2)
    received = 0
    while chunk := c.recv(65536):  # what the kernel had taken, then EOF or a reset
        received += len(chunk)
    assert received < 60_000
    c.close()


def test_stop_sends_what_is_queued_and_closes_every_socket():
    q = SendQueue(linger_s=0.5)
    t = threading.Thread(target=q.run, daemon=True)
    t.start()
    pairs = [tcp_pair() for _ in range(3)]
    for i, (s, _) in enumerate(pairs):
        fd = q.attach(s.fileno())
        assert q.send(fd, b"last words %d" % i)
        s.close()  # the loop's side is gone; the queue still holds the socket
    q.stop()
    t.join(5)
    assert not t.is_alive()
    for i, (_, c) in enumerate(pairs):
        assert recv_exactly(c, 13) == b"last words %d" % i
        assert c.recv(1) == b""
        c.close()
    assert q.attach(0) == -1  # a stopped queue takes nothing new
    assert q.stats()["closed"] == 3


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        SendQueue(max_pending=0)
    with pytest.raises(ValueError):
        SendQueue(retry_ms=0)
    q = SendQueue()
    with pytest.raises(ValueError):
        q.send(-1, b"x")
    with pytest.raises(ValueError):
        q.detach(1 << 30)
    assert not q.send(5, b"x")  # never attached
