"""NIBP schedules kept in the clinical database, so they survive a server restart.

A :class:`ScheduleBook` holds one row per patient with a running schedule (its
:class:`~vitalcore.clinical.bp_schedule.BPScheduleConfig`, who started it and when).
:class:`~vitalcore.clinical.bp_schedule.BPScheduler` writes it on ``start``/``stop``
*before* changing its own state (a failed write changes nothing) and reloads every row
when it is created with a book: after a restart each schedule resumes at the next grid
point of its period (measurements due while the server was down are not made up).
"""

from __future__ import annotations

import time
from datetime import time as dtime

from ..errors import UsageError
from .bp_schedule import BPScheduleConfig
from .db import Database

__all__ = ["ScheduleBook"]


def _hhmm(t: dtime) -> str:
    return t.isoformat(timespec="microseconds")


class ScheduleBook:
    """Running NIBP schedules, one per patient, in the clinical database ``db``
    (migrated to clinical schema version 3 or later)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, patient_id: str, config: BPScheduleConfig, by: str = "system") -> None:
        """Record (or replace) the patient's schedule.

        Raises
        ------
        UsageError
            The patient does not exist.
        """
        row = (patient_id, config.tz, _hhmm(config.day_start), _hhmm(config.day_end),
               config.interval_us(True), config.interval_us(False), by, time.time_ns() // 1000)
        with self.db.transaction() as tx:
            if tx.one("SELECT 1 FROM patients WHERE id = ?", (patient_id,)) is None:
                raise UsageError(f"unknown patient {patient_id!r}")
            tx.execute("INSERT INTO bp_schedules (patient_id, tz, day_start, day_end, "
                       "day_interval_us, night_interval_us, set_by, set_us) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (patient_id) DO UPDATE SET "
                       "tz = excluded.tz, day_start = excluded.day_start, "
                       "day_end = excluded.day_end, day_interval_us = excluded.day_interval_us, "
                       "night_interval_us = excluded.night_interval_us, "
                       "set_by = excluded.set_by, set_us = excluded.set_us", row)

    def remove(self, patient_id: str) -> bool:
        """Forget the patient's schedule; whether there was one."""
        with self.db.transaction() as tx:
            return tx.execute("DELETE FROM bp_schedules WHERE patient_id = ?",
                              (patient_id,)) > 0

    def load(self) -> dict[str, BPScheduleConfig]:
        """Every recorded schedule by patient id."""
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT patient_id, tz, day_start, day_end, day_interval_us, "
                          "night_interval_us FROM bp_schedules ORDER BY patient_id")
        return {p: BPScheduleConfig(tz, dtime.fromisoformat(ds), dtime.fromisoformat(de),
                                    di / 1e6, ni / 1e6)
                for p, tz, ds, de, di, ni in rows}
