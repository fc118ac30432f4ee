"""Alarm events on MQTT, scoped by ward, through the embedded broker.

Topics (``<ward>`` from the injected ``ward_of(device_id)``; ``<device>`` is the 16-hex
device name)::

    vc/v1/alarms/<ward>/<device>/event     every AlarmEvent, QoS 1, not retained

Devices with no ward (``ward_of`` returns None or raises) go to ward ``_unassigned``;
system alarms (device id 0) to ward ``_system``. A ward name that is not a valid single
topic level (empty, ``/``, ``+``, ``#``, NUL, over 64 characters) is replaced by
``_unassigned`` and counted. A dashboard of ward ``W`` subscribes to
``vc/v1/alarms/W/#``; the central station to ``vc/v1/alarms/+/+/event``.

Payload: JSON (msgspec), one object: ``seq, kind, ts_us, user, targets`` and the alarm's
``alarm_id, device_id (hex), code, category, priority (low|medium|high), state, message,
onset_us, raised_us, value, limit, acked_by, acked_us, silenced_until_us,
escalation_level`` (NaN values as null). Evidence stays in the alarm log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import msgspec

from .model import SYSTEM_DEVICE, AlarmEvent

__all__ = ["AlarmPublisher", "ALARM_PREFIX", "event_topic", "event_payload"]

log = logging.getLogger("vitalcore.alarms.mqtt")

ALARM_PREFIX = "vc/v1/alarms/"
UNASSIGNED = "_unassigned"
SYSTEM = "_system"
_BAD = frozenset("/+#\0")


def _level(ward: object) -> str | None:
    if not isinstance(ward, str) or not 0 < len(ward) <= 64 or _BAD & set(ward):
        return None
    return ward


def event_topic(ward: str, device_id: int) -> str:
    return f"{ALARM_PREFIX}{ward}/{device_id:016x}/event"


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def event_payload(ev: AlarmEvent) -> bytes:
    a = ev.alarm
    return msgspec.json.encode({
        "seq": ev.seq, "kind": str(ev.kind), "ts_us": ev.ts_us, "user": ev.user,
        "targets": list(ev.targets), "alarm_id": a.alarm_id, "device_id": f"{a.device_id:016x}",
        "code": a.code, "category": str(a.category), "priority": a.priority.name.lower(),
        "state": str(a.state), "message": a.message, "onset_us": a.onset_us,
        "raised_us": a.raised_us, "value": _num(a.value), "limit": _num(a.limit),
        "acked_by": a.acked_by, "acked_us": a.acked_us,
        "silenced_until_us": a.silenced_until_us, "escalation_level": a.escalation_level,
    })


class AlarmPublisher:
    """Publishes alarm events through ``publish(topic, payload, qos, retain)`` on ``loop``.

    Parameters
    ----------
    publish : callable
        ``Broker.publish`` (it must run on the broker's event loop: the publisher hops
        there with ``call_soon_threadsafe``).
    ward_of : callable
        ``ward_of(device_id) -> str | None``: the device's current ward (injected: the
        clinical organisation owns it). Called on the engine thread; must be quick.
    loop : asyncio event loop, optional
        The broker's loop (default: the running loop at construction).

    Use: ``engine.add_listener(AlarmPublisher(server.broker.publish, wards.ward_of))``.
    """

    def __init__(self, publish: Callable[[str, bytes, int, bool], None],
                 ward_of: Callable[[int], str | None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._publish = publish
        self._ward_of = ward_of
        self._loop = loop or asyncio.get_running_loop()
        self.counters = {"published": 0, "bad_ward": 0, "ward_errors": 0, "publish_errors": 0}

    def topic_for(self, device_id: int) -> str:
        if device_id == SYSTEM_DEVICE:
            return event_topic(SYSTEM, device_id)
        try:
            ward = self._ward_of(device_id)
        except Exception:  # noqa: BLE001 - the organisation service must not stop alarms
            self.counters["ward_errors"] += 1
            log.exception("ward_of(%016x) failed", device_id)
            ward = None
        if ward is None:
            return event_topic(UNASSIGNED, device_id)
        level = _level(ward)
        if level is None:
            self.counters["bad_ward"] += 1
            return event_topic(UNASSIGNED, device_id)
        return event_topic(level, device_id)

    def __call__(self, ev: AlarmEvent) -> None:
        topic = self.topic_for(ev.alarm.device_id)
        self._loop.call_soon_threadsafe(self._send, topic, event_payload(ev))

    def _send(self, topic: str, payload: bytes) -> None:
        try:
            self._publish(topic, payload, 1, False)
            self.counters["published"] += 1
        except Exception:  # noqa: BLE001
            self.counters["publish_errors"] += 1
            log.exception("publishing alarm on %s failed", topic)
