"""Which ward each device is in now: a periodically refreshed map for alarm routing.

:class:`WardDirectory` keeps ``device_id -> ward_id`` for the current time, read from the
clinical store in one statement (:meth:`ClinicalStore.device_wards`) every ``refresh_s``
seconds by its own daemon thread. :meth:`WardDirectory.ward_of` is a dictionary lookup on
an immutable snapshot, so the alarm engine's thread can call it per event
(``AlarmPublisher(broker.publish, wards.ward_of)``) without touching the database.

Threads: the refresh thread uses the store it is given. A :class:`ClinicalStore`'s
:class:`~vitalcore.clinical.db.Database` serialises its one connection with a lock (SQLite
opened with ``check_same_thread=False``; psycopg connections are thread-safe), so sharing
the server's store is safe; a refresh holds that lock for one read query.

A device's ward changes at most ``refresh_s`` late after an admission, transfer,
transport, swap or discharge. When a refresh fails (database unreachable) the last good
map is kept, the failure is counted and logged, and the next period tries again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from types import MappingProxyType

from ..errors import UsageError, VitalcoreError
from .store import ClinicalStore

__all__ = ["WardDirectory"]

log = logging.getLogger(__name__)


class WardDirectory:
    """``device_id -> ward_id`` now, refreshed from the clinical store.

    Parameters
    ----------
    store : ClinicalStore
        Read with :meth:`~ClinicalStore.device_wards` (not audited).
    refresh_s : float
        Seconds between refreshes of the background thread (> 0, finite).

    Notes
    -----
    Devices not bound to a patient, and devices of a patient in transport, have no ward
    (``None``: the alarm publisher routes them to ``_unassigned``). ``counters`` holds
    ``refreshes`` and ``failures``; ``refreshed_at`` the ``time.monotonic()`` of the last
    good refresh (None before the first).
    """

    def __init__(self, store: ClinicalStore, refresh_s: float = 5.0) -> None:
        if isinstance(refresh_s, bool) or not isinstance(refresh_s, (int, float)) \
                or not math.isfinite(refresh_s) or refresh_s <= 0:
            raise UsageError(f"refresh_s must be a positive number of seconds, got {refresh_s!r}")
        self.store = store
        self.refresh_s = float(refresh_s)
        self._wards: MappingProxyType[int, str | None] = MappingProxyType({})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshed_at: float | None = None
        self.counters = {"refreshes": 0, "failures": 0}

    def ward_of(self, device_id: int) -> str | None:
        """The device's ward at the last refresh, or None (unbound, in transport, unknown).

        A dictionary lookup, safe from any thread.
        """
        return self._wards.get(device_id)

    def snapshot(self) -> MappingProxyType[int, str | None]:
        """The current map (read-only; replaced, never mutated, by a refresh)."""
        return self._wards

    def refresh(self) -> int:
        """Re-read the map now; returns the number of bound devices.

        Raises
        ------
        StorageError
            The store failed (the previous map stays in use).
        """
        wards = self.store.device_wards()
        self._wards = MappingProxyType(wards)  # one reference swap: readers see old or new
        self.refreshed_at = time.monotonic()
        self.counters["refreshes"] += 1
        return len(wards)

    def start(self) -> None:
        """Refresh once now (errors propagate), then every ``refresh_s`` in a daemon thread."""
        if self._thread is not None:
            raise UsageError("WardDirectory already started")
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="vitalcore-wards", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the refresh thread (idempotent); the last map stays readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)  # a refresh is one read query

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except VitalcoreError as exc:
                self.counters["failures"] += 1
                log.warning("ward directory refresh failed (keeping the last map): %s", exc)
