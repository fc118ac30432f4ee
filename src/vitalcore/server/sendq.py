"""The broker's send thread: device connections' bytes written off the event loop.

:class:`SendThread` runs a :class:`vitalcore._ext.sendq.SendQueue` in a thread of its
own. The event loop queues bytes (a copy under a mutex, ~1 µs); the thread sends them
without the GIL. Measured reason: on loopback a 4-byte PUBACK ``send`` costs ~25 µs of
the sender's CPU (the kernel runs the receiver's TCP input inside it), a quarter of the
event loop's time at 10,000 devices (docs/server.md, "Send thread").

Only device connections over plain TCP go through it
(:meth:`MqttConnection.go_direct <vitalcore.server.connection.MqttConnection.go_direct>`):
their outbound traffic is small (acknowledgements, PINGRESP, commands), so the send
thread's policy for a peer that does not read (``max_pending`` bytes unsent: the
connection is closed) replaces the transport's flow control. Subscribers (users) keep
the transport's ``pause_writing`` and the session's slow-consumer policy.
"""

from __future__ import annotations

import threading

from .._ext.sendq import SendQueue

__all__ = ["SendThread"]


class SendThread:
    """A :class:`~vitalcore._ext.sendq.SendQueue` and the thread that runs it.

    Parameters
    ----------
    max_pending : int
        Bytes a socket may leave unsent before its connection is closed (bytes).
    linger_s : float
        A closed connection's unsent bytes are retried this long (s).

    ``attach``, ``send`` and ``detach`` are the queue's (event loop only).
    """

    def __init__(self, max_pending: int = 1 << 20, linger_s: float = 2.0) -> None:
        self.queue = SendQueue(max_pending=max_pending, linger_s=linger_s)
        self.attach = self.queue.attach
        self.send = self.queue.send
        self.detach = self.queue.detach
        self._thread = threading.Thread(target=self.queue.run, name="vitalcore-send",
                                        daemon=True)
        self._thread.start()

    def stats(self) -> dict[str, int]:
        """The queue's counters (see :meth:`SendQueue.stats`)."""
        return self.queue.stats()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Send what is queued, close the sockets, end the thread; False on timeout."""
        self.queue.stop()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
