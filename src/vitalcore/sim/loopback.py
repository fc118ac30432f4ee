"""Simulated wearables behind a loopback "broker" on a fake clock, into a real Store.

For hours or days of simulated time in seconds of real time (BP schedules, ambulatory
reports): :class:`LoopbackWard` has the three members
:class:`~vitalcore.server.commands.CommandCenter` uses of a broker (``loop``,
``tree.match``, ``publish``). A published COMMAND frame is decoded and handed to the
addressed :class:`~vitalcore.sim.wearable.ScenarioWearable` at the clock's current time;
the wearable is then ticked every 250 ms of clock time while it measures, and its frames
go through ``Store.feed``/``commit``, so the center sees the ACKs through its commit
listener exactly as on the server. What is not exercised is MQTT itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable
from types import SimpleNamespace
from typing import Protocol

from .. import protocol as P
from ..codec import FrameDecoder
from ..server.topics import device_name
from ..storage.store import Store
from .wearable import ScenarioWearable

__all__ = ["LoopbackWard", "Clock"]

#: Frame types stored by default: all but the bulky waveforms.
NO_WAVES = frozenset(int(t) for t in P.FrameType) - {P.FrameType.ECG, P.FrameType.PLETH}


class Clock(Protocol):
    """A clock in µs since the epoch that runs callbacks at given times."""

    def now_us(self) -> int: ...

    def call_at(self, t_us: int, callback: Callable[[], None]) -> object: ...


class LoopbackWard:
    """Command path from a :class:`CommandCenter` to simulated wearables, no network.

    Parameters
    ----------
    loop : asyncio.AbstractEventLoop
        The loop the center runs on.
    clock : Clock
        Drives device time (e.g. :class:`~vitalcore.clinical.bp_schedule.FakeClock`).
    store : Store
        Receives every frame the wearables send (of the types in ``keep``).
    wearables : iterable of ScenarioWearable
    keep : collection of int, optional
        Frame types stored (default :data:`NO_WAVES`).
    before_command : callable(wearable, t_us), optional
        Called just before a command reaches a wearable, e.g. to set the true BP the
        cuff will measure.

    Attributes
    ----------
    connected : set of int
        Device ids with a session; commands to others are NOT_CONNECTED. A device in
        ``connected`` with no wearable behind it never answers.
    published : list of (t_us, device_id, kind)
        Every command delivered, in order.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, store: Store,
                 wearables: Iterable[ScenarioWearable], *, keep: Collection[int] = NO_WAVES,
                 before_command: Callable[[ScenarioWearable, int], None] | None = None) -> None:
        self.loop = loop
        self.tree = self
        self.clock = clock
        self.store = store
        self.wearables = {w.device_id: w for w in wearables}
        self.connected = set(self.wearables)
        self.keep = frozenset(keep)
        self.before_command = before_command
        self.published: list[tuple[int, int, int]] = []
        self._decoder = FrameDecoder()
        self._ticking: set[int] = set()  # devices with a tick chain armed on the clock

    # -- the broker members CommandCenter uses ---------------------------------------------
    def match(self, topic: str) -> list[SimpleNamespace]:
        """Sessions subscribed to a device's command topic (``vc/v1/dev/<hex>/cmd``)."""
        dev = int(topic.split("/")[3], 16)
        return [SimpleNamespace(key=(device_name(dev), 0))] if dev in self.connected else []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Deliver the COMMAND frames in ``payload`` at the clock's current time."""
        self._decoder.feed(payload)
        cmds = self._decoder.take().tables["commands"]
        now = self.clock.now_us()
        for dev, cid, kind, arg in zip(cmds["device_id"].tolist(), cmds["command_id"].tolist(),
                                       cmds["kind"].tolist(), cmds["arg"].tolist(), strict=True):
            self.published.append((now, dev, kind))
            self.clock.call_at(now, lambda d=dev, c=cid, k=kind, a=arg: self._deliver(d, c, k, a))

    # -- the devices -----------------------------------------------------------------------
    def _deliver(self, dev: int, cid: int, kind: int, arg: int) -> None:
        w = self.wearables.get(dev)
        if w is None:
            return
        now = self.clock.now_us()
        self._ingest(w.frames_until(now))  # device time catches up
        if self.before_command is not None:
            self.before_command(w, now)
        w.command(cid, kind, arg)
        if dev not in self._ticking:  # the answers go out with the next ticks
            self._ticking.add(dev)
            self._tick(dev)

    def _tick(self, dev: int) -> None:
        w = self.wearables[dev]
        self._ingest(w.next_tick())
        if w.measuring:
            self.clock.call_at(w.now_us, lambda: self._tick(dev))
        else:
            self._ticking.discard(dev)

    def _ingest(self, frames: list[bytes]) -> None:
        frames = [f for f in frames if f[4] in self.keep]
        if frames:
            self.store.feed(b"".join(frames))
            self.store.commit()
