"""Where notices go: a small :class:`Notifier` interface and three implementations.

The desk hands each :class:`~vitalcore.service.model.Notice` to its notifier *after* the
change that caused it committed. A notifier that raises is contained by the desk
(logged, counted); an ``assigned`` notice that failed leaves the order's notify clock
running, so the breach escalates.

- :class:`CallbackNotifier`: call a function (tests, e-mail/SMS gateways, pagers).
- :class:`MqttNotifier`: publish JSON on ``vc/v1/service/<target>/<kind>`` through a
  ``publish(topic, payload, qos, retain)`` callable such as
  :meth:`vitalcore.server.Broker.publish` (vendor portals and ward screens subscribe).
- :class:`FanoutNotifier`: several notifiers; every one is tried, the first error is
  raised after all have run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol

import msgspec

from ..errors import UsageError
from .model import Notice

__all__ = ["Notifier", "CallbackNotifier", "MqttNotifier", "FanoutNotifier", "SERVICE_PREFIX",
           "notice_topic"]

SERVICE_PREFIX = "vc/v1/service/"
_LEVEL = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


class Notifier(Protocol):
    """Delivers a notice (raise to report that it could not)."""

    def notify(self, notice: Notice) -> None: ...


class CallbackNotifier:
    """Calls ``callback(notice)``."""

    def __init__(self, callback: Callable[[Notice], None]) -> None:
        if not callable(callback):
            raise UsageError("CallbackNotifier needs a callable")
        self._callback = callback

    def notify(self, notice: Notice) -> None:
        self._callback(notice)


def notice_topic(target: str, kind: str) -> str:
    """The MQTT topic of a notice for ``target`` (``team/biomed`` → levels ``team``,
    ``biomed``); :class:`UsageError` for a target that is not safe topic levels."""
    levels = target.split("/")
    if not levels or not all(_LEVEL.fullmatch(x) for x in levels) or not _LEVEL.fullmatch(kind):
        raise UsageError(f"notice target {target!r} / kind {kind!r} is not a safe MQTT topic")
    return f"{SERVICE_PREFIX}{target}/{kind}"


class MqttNotifier:
    """Publishes each notice once per target as JSON, QoS 1, not retained.

    Parameters
    ----------
    publish : callable
        ``publish(topic, payload, qos, retain)``, e.g. ``server.broker.publish`` (call
        the desk on the broker's event loop).
    """

    def __init__(self, publish: Callable[[str, bytes, int, bool], object]) -> None:
        self._publish = publish

    def notify(self, notice: Notice) -> None:
        payload = msgspec.json.encode(notice.to_json())
        for target in notice.targets:
            self._publish(notice_topic(target, notice.kind), payload, 1, False)


class FanoutNotifier:
    """Hands each notice to every notifier in turn."""

    def __init__(self, notifiers: Iterable[Notifier]) -> None:
        self._notifiers = tuple(notifiers)

    def notify(self, notice: Notice) -> None:
        first: Exception | None = None
        for n in self._notifiers:
            try:
                n.notify(notice)
            except Exception as exc:  # noqa: BLE001 - the others must still hear it
                first = first or exc
        if first is not None:
            raise first
