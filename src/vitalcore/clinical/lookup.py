"""Where data belongs: patient ↔ device ↔ ward at a time (a store part).

These answer the questions of history queries, alarms and BP schedules. Without
``user`` they are engine-internal lookups (not audited); with ``user`` the access is
checked with ``read_vitals`` at the current time and audited like any patient-data access.
"""

from __future__ import annotations

from ..errors import UsageError
from .access import bound_patient_at
from .core import StoreCore
from .db import Tx
from .model import Permission, Placement, Resource, check_id, check_time, device_key
from .spans import DeviceSpan

__all__ = ["LookupPart"]

_INF = 1 << 63


def _known(tx: Tx, table: str, key: str, what: str) -> None:
    if tx.one(f"SELECT 1 FROM {table} WHERE id = ?", (key,)) is None:
        raise UsageError(f"unknown {what} {key!r}")


class LookupPart(StoreCore):
    """Read-side lookups used by other subsystems."""

    def _read_check(self, user: str | None, resource: Resource, action: str) -> None:
        if user is not None:
            self.authorize(user, Permission.READ_VITALS, resource, action=action)

    def device_spans(self, patient_id: str, t0_us: int, t1_us: int, *,
                     user: str | None = None) -> list[DeviceSpan]:
        """The device spans of the patient's record that overlap ``[t0_us, t1_us)``.

        Each binding is split where the patient changed place, so a span's ``ward_id``
        holds over the whole span (``None`` in transport). Spans keep their real bounds
        (not clipped to the query window); ``end_us`` is None while still open. Sorted by
        ``(start_us, device_id)``. Spans of one device never overlap; spans of different
        devices overlap when the patient wears several.

        Parameters
        ----------
        patient_id : str
            The patient record.
        t0_us, t1_us : int
            The window, µs since the epoch (UTC), ``t0_us < t1_us``.
        user : str, optional
            Check ``read_vitals`` on the patient now and audit the access.

        Returns
        -------
        list of DeviceSpan

        Raises
        ------
        UsageError
            Unknown patient, bad id or times, ``t1_us <= t0_us``.
        AccessDenied
            ``user`` given and not allowed (audited).
        """
        check_id(patient_id, "patient")
        check_time(t0_us, "t0_us")
        check_time(t1_us, "t1_us")
        if t1_us <= t0_us:
            raise UsageError(f"empty time range [{t0_us}, {t1_us})")
        self._read_check(user, Resource.patient(patient_id), "device_spans")
        with self.db.transaction(write=False) as tx:
            _known(tx, "patients", patient_id, "patient")
            bindings = tx.all(
                "SELECT device_id, start_us, end_us FROM bindings WHERE patient_id = ? "
                "AND start_us < ? AND (end_us IS NULL OR end_us > ?) AND "
                "(end_us IS NULL OR end_us > start_us)", (patient_id, t1_us, t0_us))
            places = tx.all(
                "SELECT ward_id, start_us, end_us FROM placements WHERE patient_id = ? "
                "AND start_us < ? AND (end_us IS NULL OR end_us > ?) ORDER BY start_us",
                (patient_id, t1_us, t0_us))
        spans = []
        for key, b0, b1 in bindings:
            b1 = _INF if b1 is None else b1
            for ward, p0, p1 in places:
                p1 = _INF if p1 is None else p1
                s0, s1 = max(b0, p0), min(b1, p1)
                if s0 < s1 and s0 < t1_us and s1 > t0_us:
                    spans.append(DeviceSpan(patient_id, int(key, 16), s0,
                                            None if s1 == _INF else s1, ward))
        spans.sort(key=lambda s: (s.start_us, s.device_id))
        return spans

    def patient_of(self, device_id: int, t_us: int, *, user: str | None = None) -> str | None:
        """The patient the device was bound to at ``t_us``, or None.

        Parameters
        ----------
        device_id : int
            Wire-format device id (u64, non-zero).
        t_us : int
            µs since the epoch; bindings are ``[start, end)``, so at the instant of a
            swap the new device's patient is returned for the new device only.
        user : str, optional
            Check ``read_vitals`` on the device now and audit the access.

        Raises
        ------
        UsageError
            Unknown device or bad arguments.
        AccessDenied
            ``user`` given and not allowed (audited).
        """
        key = device_key(device_id)
        check_time(t_us, "t_us")
        self._read_check(user, Resource.device(device_id), "patient_of")
        with self.db.transaction(write=False) as tx:
            _known(tx, "devices", key, "device")
            return bound_patient_at(tx, key, t_us)

    def devices_of_ward(self, ward_id: str, t_us: int, *, user: str | None = None) -> list[int]:
        """Devices bound at ``t_us`` to patients placed in the ward then, ascending.

        Patients in transport from or to the ward are not in it.

        Parameters
        ----------
        ward_id : str
        t_us : int
            µs since the epoch (placements and bindings are ``[start, end)``).
        user : str, optional
            Check ``read_vitals`` on the ward now and audit the access.

        Returns
        -------
        list of int
            Device ids (u64).

        Raises
        ------
        UsageError
            Unknown ward or bad arguments.
        AccessDenied
            ``user`` given and not allowed (audited).
        """
        check_id(ward_id, "ward")
        check_time(t_us, "t_us")
        self._read_check(user, Resource.ward(ward_id), "devices_of_ward")
        with self.db.transaction(write=False) as tx:
            _known(tx, "wards", ward_id, "ward")
            rows = tx.all(
                "SELECT DISTINCT b.device_id FROM placements p JOIN bindings b "
                "ON b.patient_id = p.patient_id WHERE p.ward_id = ? "
                "AND p.start_us <= ? AND (p.end_us IS NULL OR p.end_us > ?) "
                "AND b.start_us <= ? AND (b.end_us IS NULL OR b.end_us > ?) "
                "ORDER BY b.device_id", (ward_id, t_us, t_us, t_us, t_us))
        return [int(k, 16) for (k,) in rows]

    def device_wards(self, t_us: int | None = None) -> dict[int, str | None]:
        """Every device bound at ``t_us`` (default now) → its patient's ward then.

        One statement: bindings open at ``t_us`` joined with the patient's placement at
        ``t_us``. A patient in transport (or, inconsistently, with no placement) maps to
        None. Engine-internal (not audited): it feeds the alarm topic routing of
        :class:`~vitalcore.clinical.wards.WardDirectory`.

        Parameters
        ----------
        t_us : int, optional
            µs since the epoch (bindings and placements are ``[start, end)``).

        Returns
        -------
        dict of int to str or None
            Device id (u64) → ward id.
        """
        t = self._time(t_us)
        with self.db.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT b.device_id, p.ward_id FROM bindings b LEFT JOIN placements p "
                "ON p.patient_id = b.patient_id AND p.start_us <= ? "
                "AND (p.end_us IS NULL OR p.end_us > ?) "
                "WHERE b.start_us <= ? AND (b.end_us IS NULL OR b.end_us > ?)", (t, t, t, t))
        return {int(k, 16): ward for k, ward in rows}

    def patients_of_ward(self, ward_id: str, t_us: int, *,
                         user: str | None = None) -> list[str]:
        """Patients placed in the ward at ``t_us``, by id (unknown ward: UsageError)."""
        check_id(ward_id, "ward")
        check_time(t_us, "t_us")
        self._read_check(user, Resource.ward(ward_id), "patients_of_ward")
        with self.db.transaction(write=False) as tx:
            _known(tx, "wards", ward_id, "ward")
            rows = tx.all("SELECT patient_id FROM placements WHERE ward_id = ? AND start_us <= ? "
                          "AND (end_us IS NULL OR end_us > ?) ORDER BY patient_id",
                          (ward_id, t_us, t_us))
        return [p for (p,) in rows]

    def placements(self, patient_id: str, *, user: str | None = None) -> list[Placement]:
        """The patient's whole placement history, oldest first (unknown: UsageError)."""
        check_id(patient_id, "patient")
        self._read_check(user, Resource.patient(patient_id), "placements")
        with self.db.transaction(write=False) as tx:
            _known(tx, "patients", patient_id, "patient")
            rows = tx.all("SELECT patient_id, ward_id, bed_id, from_ward_id, to_ward_id, "
                          "start_us, end_us FROM placements WHERE patient_id = ? "
                          "ORDER BY start_us, id", (patient_id,))
        return [Placement(*r) for r in rows]
