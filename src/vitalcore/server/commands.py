"""Commands to devices, tracked until the device answers or a timeout (docs/server.md).

:class:`CommandCenter` publishes one COMMAND frame (docs/protocol.md §8) per device on
the device's ``cmd`` topic at QoS 1 and watches the store's committed batches (a
:meth:`~vitalcore.storage.store.Store.add_commit_listener` hook, no polling) for the
device's ACK frames (§7): ACCEPTED is progress, COMPLETED/FAILED/BUSY/UNSUPPORTED end
the command; no final ACK within the timeout ends it as TIMEOUT. A device with no
session subscribed to its ``cmd`` topic cannot receive anything: it is reported
NOT_CONNECTED at once and nothing is published to it.

Everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from ..codec import encode_command
from ..errors import UsageError
from ..protocol import AckStatus, CommandKind
from .topics import cmd_topic, device_name

if TYPE_CHECKING:
    from ..batch import DecodedBatch
    from ..storage.store import Store
    from .broker import Broker

__all__ = ["CommandStatus", "CommandResult", "Progress", "CommandRound", "CommandCenter"]

log = logging.getLogger("vitalcore.server")

_U32 = 1 << 32


class CommandStatus(enum.Enum):
    """Where a command to one device stands. The first two are not final."""

    PENDING = "pending"  #: published, no answer yet
    ACCEPTED = "accepted"  #: the device started it (ACK ACCEPTED)
    COMPLETED = "completed"  #: ACK COMPLETED
    FAILED = "failed"  #: ACK FAILED (``detail``: the device's reason code)
    BUSY = "busy"  #: ACK BUSY: the device could not start it now
    UNSUPPORTED = "unsupported"  #: ACK UNSUPPORTED: the device does not know the kind
    TIMEOUT = "timeout"  #: no final ACK within the timeout
    NOT_CONNECTED = "not_connected"  #: no session subscribed to the device's cmd topic
    CANCELLED = "cancelled"  #: the command center was closed first

    @property
    def final(self) -> bool:
        return self not in (CommandStatus.PENDING, CommandStatus.ACCEPTED)


_FROM_ACK = {
    AckStatus.COMPLETED: CommandStatus.COMPLETED,
    AckStatus.FAILED: CommandStatus.FAILED,
    AckStatus.BUSY: CommandStatus.BUSY,
    AckStatus.UNSUPPORTED: CommandStatus.UNSUPPORTED,
}


@dataclass
class CommandResult:
    """The command sent to one device and what became of it (updated in place).

    Times are server wall-clock µs since the Unix epoch: ``sent_at`` when published,
    ``accepted_at`` when the ACCEPTED ack was committed to the store (0: none),
    ``finished_at`` when the final status was set (0: not yet). ``detail`` is the
    ACK's device-specific reason code (0 when there is none).
    """

    device_id: int
    command_id: int
    kind: int
    arg: int
    status: CommandStatus = CommandStatus.PENDING
    sent_at: int = 0
    accepted_at: int = 0
    finished_at: int = 0
    detail: int = 0
    note: str = ""  #: why, in words, for statuses the device did not report

    @property
    def done(self) -> bool:
        return self.status.final


class Progress(NamedTuple):
    """Counts of a :class:`CommandRound`: ``done`` of ``total`` have a final status."""

    total: int
    accepted: int  #: started by the device, not finished
    done: int
    succeeded: int  #: COMPLETED


class CommandRound:
    """One :meth:`CommandCenter.start` call: its results, progress and completion."""

    def __init__(self, center: CommandCenter, results: list[CommandResult], timeout_s: float,
                 on_update: Callable[[CommandResult], None] | None) -> None:
        self.center = center
        self.results = results
        self.on_update = on_update
        self._open = sum(not r.done for r in results)
        self._finished = center.loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        if self._open:
            self._timer = center.loop.call_later(timeout_s, self._expire)
        else:
            self._finished.set_result(None)

    def progress(self) -> Progress:
        """How many devices have answered so far (e.g. "3 of 12 done")."""
        st = [r.status for r in self.results]
        return Progress(len(st), st.count(CommandStatus.ACCEPTED),
                        sum(s.final for s in st), st.count(CommandStatus.COMPLETED))

    @property
    def done(self) -> bool:
        return self._finished.done()

    async def wait(self) -> list[CommandResult]:
        """Wait until every result is final; the results in the order of the devices."""
        await asyncio.shield(self._finished)
        return self.results

    def _update(self, result: CommandResult, status: CommandStatus, now_us: int,
                detail: int = 0, note: str = "") -> None:
        if result.done:
            return
        result.detail = detail
        result.note = note
        if status is CommandStatus.ACCEPTED:
            result.status = status
            result.accepted_at = now_us
        else:
            result.status = status
            result.finished_at = now_us
            self.center._forget(result)
            self._open -= 1
        if self.on_update is not None:
            try:
                self.on_update(result)
            except Exception:  # a dashboard's bug must not stop the tracking
                log.exception("command on_update callback failed")
        if self._open == 0 and not self._finished.done():
            if self._timer is not None:
                self._timer.cancel()
            self._finished.set_result(None)

    def _expire(self) -> None:
        self._timer = None
        now = _now_us()
        for r in self.results:
            if not r.done:
                self.center.counters["timeouts"] += 1
                self._update(r, CommandStatus.TIMEOUT, now, note=(
                    "accepted, not finished in time" if r.status is CommandStatus.ACCEPTED
                    else "no answer in time"))


class CommandCenter:
    """Sends commands to devices through a broker and tracks them through a store.

    Parameters
    ----------
    broker : Broker
        The running broker (``Server.broker``); commands go out through
        :meth:`~vitalcore.server.broker.Broker.publish` at QoS 1.
    store : Store
        The store the broker ingests into: ACK frames are seen as they are committed.
    default_timeout_s : float
        Seconds a command may take, from publishing to its final ACK, unless
        :meth:`send` says otherwise.
    first_command_id : int, optional
        Command id of the first command (then +1, modulo 2^32, skipping 0). Default
        random, so command ids of a restarted server do not collide with those a
        device remembers (devices ignore a command id they executed recently).

    Notes
    -----
    Command ids are unique per center (up to 2^32 commands); sequence numbers count the
    center's commands to each device from 0. An ACK is matched to a pending command by
    (device id, command id) and must carry the command's kind; other ACKs are counted
    (``unmatched_acks``) and ignored. :meth:`close` removes the store listener and
    ends pending commands as CANCELLED.
    """

    def __init__(self, broker: Broker, store: Store, *, default_timeout_s: float = 60.0,
                 first_command_id: int | None = None) -> None:
        if not default_timeout_s > 0:
            raise UsageError(f"default_timeout_s must be > 0, got {default_timeout_s!r}")
        self.broker = broker
        self.store = store
        self.loop = broker.loop
        self.default_timeout_s = float(default_timeout_s)
        if first_command_id is None:
            first_command_id = secrets.randbelow(_U32 - 1) + 1
        if not 0 < first_command_id < _U32:
            raise UsageError(f"first_command_id must be in 1..2^32-1, got {first_command_id!r}")
        self._next_id = first_command_id
        self._seq: dict[int, int] = {}
        self._pending: dict[tuple[int, int], tuple[CommandRound, CommandResult]] = {}
        self._rounds: set[CommandRound] = set()
        self.counters: Counter[str] = Counter()
        self._closed = False
        store.add_commit_listener(self._on_commit)

    # -- sending ------------------------------------------------------------------------
    async def send(self, device_ids: Iterable[int], kind: CommandKind | int, arg: int = 0,
                   timeout_s: float | None = None,
                   on_update: Callable[[CommandResult], None] | None = None,
                   ) -> list[CommandResult]:
        """Send ``kind(arg)`` to each device and wait for every result.

        Parameters
        ----------
        device_ids : iterable of int
            Devices (a repeated id is sent to once).
        kind : CommandKind or int
            Command kind, 0..255 (kinds unknown to a device come back UNSUPPORTED).
        arg : int
            Argument, 0..2^32-1 (its unit depends on the kind, docs/protocol.md §8).
        timeout_s : float, optional
            Seconds until unfinished commands end as TIMEOUT (default
            ``default_timeout_s``).
        on_update : callable, optional
            Called with a :class:`CommandResult` each time one changes (ACCEPTED, final).

        Returns
        -------
        list of CommandResult
            One per distinct device, in the order given, every one final.
        """
        return await self.start(device_ids, kind, arg, timeout_s, on_update).wait()

    def start(self, device_ids: Iterable[int], kind: CommandKind | int, arg: int = 0,
              timeout_s: float | None = None,
              on_update: Callable[[CommandResult], None] | None = None) -> CommandRound:
        """Publish now and return the :class:`CommandRound` tracking it (see :meth:`send`)."""
        if self._closed:
            raise UsageError("command center is closed")
        devices = list(dict.fromkeys(device_ids))
        if not devices:
            raise UsageError("no device to send the command to")
        names = [device_name(d) for d in devices]  # UsageError for an invalid id
        if not 0 <= int(kind) <= 255:
            raise UsageError(f"command kind must be in 0..255, got {kind!r}")
        if not 0 <= arg < _U32:
            raise UsageError(f"command argument must be in 0..2^32-1, got {arg!r}")
        timeout = self.default_timeout_s if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise UsageError(f"timeout_s must be > 0, got {timeout_s!r}")
        now = _now_us()
        results = []
        for dev, name in zip(devices, names, strict=True):
            r = CommandResult(dev, self._take_id(), int(kind), arg, sent_at=now)
            if not self._subscribed(dev, name):
                self.counters["not_connected"] += 1
                r.status, r.finished_at = CommandStatus.NOT_CONNECTED, now
                r.note = "no session subscribed to the device's cmd topic"
            results.append(r)
        rnd = CommandRound(self, results, timeout, on_update)
        for r in results:
            if r.done:
                continue
            seq = self._seq.get(r.device_id, 0)
            self._seq[r.device_id] = (seq + 1) % _U32
            self._pending[(r.device_id, r.command_id)] = (rnd, r)
            frame = encode_command(r.device_id, seq, now, r.command_id, r.kind, r.arg)
            self.broker.publish(cmd_topic(r.device_id), frame, qos=1)
            self.counters["sent"] += 1
        if not rnd.done:
            self._rounds.add(rnd)
            rnd._finished.add_done_callback(lambda _f: self._rounds.discard(rnd))
        return rnd

    def _take_id(self) -> int:
        cid = self._next_id
        self._next_id = cid % (_U32 - 1) + 1  # 1..2^32-1, wrapping
        return cid

    def _subscribed(self, device_id: int, name: str) -> bool:
        """Whether a session of the device itself subscribes to its cmd topic (connected
        or not: a persistent session queues the command for the reconnect)."""
        return any(session.key[0] == name
                   for session in self.broker.tree.match(cmd_topic(device_id)))

    def _forget(self, result: CommandResult) -> None:
        self._pending.pop((result.device_id, result.command_id), None)

    # -- tracking -------------------------------------------------------------------------
    def _on_commit(self, batch: DecodedBatch) -> None:
        acks = batch.tables["acks"]
        if not len(acks["command_id"]):
            return
        now = _now_us()
        for dev, cid, kind, status, detail in zip(
                acks["device_id"].tolist(), acks["command_id"].tolist(), acks["kind"].tolist(),
                acks["status"].tolist(), acks["detail"].tolist(), strict=True):
            entry = self._pending.get((dev, cid))
            if entry is None or entry[1].kind != kind:
                self.counters["unmatched_acks"] += 1
                continue
            rnd, result = entry
            # the decoder rejects statuses beyond UNSUPPORTED (VALUE_RANGE): all are known
            new = CommandStatus.ACCEPTED if status == AckStatus.ACCEPTED else _FROM_ACK[status]
            self.counters["acks"] += 1
            rnd._update(result, new, now, detail=detail)

    def pending(self) -> list[CommandResult]:
        """Commands not finished yet, over every round of this center."""
        return [r for _, r in self._pending.values()]

    def stats(self) -> dict[str, int]:
        """Counters: ``sent``, ``acks``, ``timeouts``, ``not_connected``,
        ``unmatched_acks``, plus current ``pending``."""
        return {**self.counters, "pending": len(self._pending)}

    def close(self) -> None:
        """Stop tracking: pending commands end as CANCELLED. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.store.remove_commit_listener(self._on_commit)
        now = _now_us()
        for rnd in list(self._rounds):
            if rnd._timer is not None:
                rnd._timer.cancel()
            for r in rnd.results:
                rnd._update(r, CommandStatus.CANCELLED, now, note="command center closed")


def _now_us() -> int:
    return time.time_ns() // 1000
