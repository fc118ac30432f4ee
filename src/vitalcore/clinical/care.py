"""Patient stays: admission, transfers, ambulance transport, device bindings, discharge.

A patient has one record (``patient_id``) for life. A stay is a chain of placements
(ward, or transport between wards or hospitals) from admission to discharge, with no
gap and no overlap; devices are bound to the patient, not to the ward, so they stay
bound through transfers and transport unless swapped. Rules, all checked inside the
operation's transaction (nothing is written if one fails):

- times of one patient's and one device's events never go backwards;
- a device is bound to at most one patient at a time, and only from ``available``
  (cleaned and function-checked); released devices go to ``to_clean``;
- one patient per bed; a bed belongs to the ward the patient is placed in;
- ``manage_patients`` is needed on the patient where they are (at the event time) and
  on the ward they go to.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from .core import Operation, StoreCore
from .devices import device_event, lock_device
from .model import DeviceState, Permission, Resource, check_id, check_name, device_key

__all__ = ["CarePart"]

_MANAGE = Permission.MANAGE_PATIENTS


def _check_ids(patient_id: object, ward_id: object = None, bed_id: object = None) -> None:
    check_id(patient_id, "patient")
    if ward_id is not None:
        check_id(ward_id, "ward")
    if bed_id is not None:
        check_id(bed_id, "bed")


def _lock_patient(op: Operation, patient_id: str) -> tuple | None:
    """The patient's open placement ``(id, ward_id)`` or None; checks and bumps the time."""
    tx = op.tx
    last = tx.scalar("SELECT last_event_us FROM patients WHERE id = ?" + tx.for_update,
                     (patient_id,))
    if last is None:
        raise UsageError(f"unknown patient {patient_id!r}")
    if op.at_us < last:
        raise UsageError(f"patient {patient_id!r}: time {op.at_us} is before its last "
                         f"recorded event ({last}); events must be recorded in order")
    tx.execute("UPDATE patients SET last_event_us = ? WHERE id = ?", (op.at_us, patient_id))
    return tx.one("SELECT id, ward_id FROM placements WHERE patient_id = ? AND end_us IS NULL",
                  (patient_id,))


def _check_bed(op: Operation, bed_id: str | None, ward_id: str) -> None:
    if bed_id is None:
        return
    ward = op.tx.scalar("SELECT ward_id FROM beds WHERE id = ?", (bed_id,))
    if ward is None:
        raise UsageError(f"unknown bed {bed_id!r}")
    if ward != ward_id:
        raise UsageError(f"bed {bed_id!r} belongs to ward {ward!r}, not {ward_id!r}")
    if op.tx.one("SELECT 1 FROM placements WHERE bed_id = ? AND end_us IS NULL", (bed_id,)):
        raise UsageError(f"bed {bed_id!r} is occupied")


def _place(op: Operation, patient_id: str, open_id: int | None, ward_id: str | None,
           bed_id: str | None = None, from_ward: str | None = None,
           to_ward: str | None = None) -> None:
    if open_id is not None:
        op.tx.execute("UPDATE placements SET end_us = ? WHERE id = ?", (op.at_us, open_id))
    op.tx.execute("INSERT INTO placements (patient_id, ward_id, bed_id, from_ward_id, "
                  "to_ward_id, start_us) VALUES (?, ?, ?, ?, ?, ?)",
                  (patient_id, ward_id, bed_id, from_ward, to_ward, op.at_us))


def _bind(op: Operation, patient_id: str, device_id: int) -> str:
    key = device_key(device_id)
    state, last = lock_device(op.tx, key)
    if state is DeviceState.IN_USE:
        holder = op.tx.scalar("SELECT patient_id FROM bindings WHERE device_id = ? "
                              "AND end_us IS NULL", (key,))
        raise UsageError(f"device {key} is bound already"
                         + (" to this patient" if holder == patient_id else ""))
    if state is not DeviceState.AVAILABLE:
        raise UsageError(f"device {key} is {state.value}: it must be cleaned and pass a "
                         "function check before it is bound")
    if op.at_us < last:
        raise UsageError(f"device {key}: time {op.at_us} is before its last recorded "
                         f"event ({last})")
    op.tx.execute("INSERT INTO bindings (patient_id, device_id, start_us) VALUES (?, ?, ?)",
                  (patient_id, key, op.at_us))
    device_event(op.tx, key, "bound", op.at_us, op.actor, DeviceState.IN_USE)
    return key


def _release(op: Operation, patient_id: str, key: str) -> None:
    n = op.tx.execute("UPDATE bindings SET end_us = ? WHERE device_id = ? AND patient_id = ? "
                      "AND end_us IS NULL", (op.at_us, key, patient_id))
    if n != 1:
        raise UsageError(f"device {key} is not bound to patient {patient_id!r}")
    device_event(op.tx, key, "released", op.at_us, op.actor, DeviceState.TO_CLEAN)


class CarePart(StoreCore):
    """Admission, transfer, transport, device binding and discharge."""

    def admit(self, actor: str, patient_id: str, ward_id: str, bed_id: str | None = None,
              devices: Iterable[int] = (), display_name: str = "",
              at_us: int | None = None) -> None:
        """Admit a patient to a ward (optionally a bed) and bind ``devices``.

        A new ``patient_id`` creates the record; a known one must not be admitted now
        (readmission continues the same record). Needs ``manage_patients`` on the ward.
        """
        _check_ids(patient_id, ward_id, bed_id)
        devices = list(devices)
        with self._operation(actor, "admit", Resource.patient(patient_id), at_us) as op:
            op.require(_MANAGE, Resource.ward(ward_id))
            tx = op.tx
            if tx.one("SELECT 1 FROM patients WHERE id = ?", (patient_id,)) is None:
                name = check_name(display_name or patient_id, "display name")
                tx.execute("INSERT INTO patients (id, display_name, created_us, last_event_us) "
                           "VALUES (?, ?, ?, ?)", (patient_id, name, op.at_us, op.at_us))
            if _lock_patient(op, patient_id) is not None:
                raise UsageError(f"patient {patient_id!r} is admitted already")
            _check_bed(op, bed_id, ward_id)
            _place(op, patient_id, None, ward_id, bed_id)
            keys = [_bind(op, patient_id, d) for d in devices]
            op.detail = {"ward": ward_id, "bed": bed_id, "devices": keys}

    def transfer(self, actor: str, patient_id: str, ward_id: str, bed_id: str | None = None,
                 at_us: int | None = None) -> None:
        """Move an admitted patient (in a ward or in transport) to ``ward_id``.

        The ward may be in another hospital. Bound devices stay bound. Needs
        ``manage_patients`` on the patient (where they are now) and on ``ward_id``.
        """
        _check_ids(patient_id, ward_id, bed_id)
        with self._operation(actor, "transfer", Resource.patient(patient_id), at_us) as op:
            current = _lock_patient(op, patient_id)
            if current is None:
                raise UsageError(f"patient {patient_id!r} is not admitted")
            op.require(_MANAGE, Resource.patient(patient_id))
            op.require(_MANAGE, Resource.ward(ward_id))
            _check_bed(op, bed_id, ward_id)
            _place(op, patient_id, current[0], ward_id, bed_id)
            op.detail = {"from_ward": current[1], "ward": ward_id, "bed": bed_id}

    def start_transport(self, actor: str, patient_id: str, to_ward_id: str | None = None,
                        at_us: int | None = None) -> None:
        """The patient leaves their ward for transport (ambulance, between hospitals).

        Monitoring continues: bound devices stay bound (swap them with
        :meth:`swap_device` if needed). End the transport with :meth:`transfer` to the
        arrival ward. ``to_ward_id`` announces the destination (its staff then see the
        patient); needs ``manage_patients`` on the patient and on that ward.
        """
        _check_ids(patient_id, to_ward_id)
        with self._operation(actor, "start_transport", Resource.patient(patient_id),
                             at_us) as op:
            current = _lock_patient(op, patient_id)
            if current is None:
                raise UsageError(f"patient {patient_id!r} is not admitted")
            if current[1] is None:
                raise UsageError(f"patient {patient_id!r} is in transport already")
            op.require(_MANAGE, Resource.patient(patient_id))
            if to_ward_id is not None:
                op.require(_MANAGE, Resource.ward(to_ward_id))
            _place(op, patient_id, current[0], None, None, current[1], to_ward_id)
            op.detail = {"from_ward": current[1], "to_ward": to_ward_id}

    def _device_change(self, actor: str, action: str, patient_id: str,
                       release: Iterable[int], bind: Iterable[int], at_us: int | None) -> None:
        _check_ids(patient_id)
        release, bind = list(release), list(bind)
        with self._operation(actor, action, Resource.patient(patient_id), at_us) as op:
            if _lock_patient(op, patient_id) is None:
                raise UsageError(f"patient {patient_id!r} is not admitted")
            op.require(_MANAGE, Resource.patient(patient_id))
            for d in release:
                _release(op, patient_id, device_key(d))
            keys = [_bind(op, patient_id, d) for d in bind]
            op.detail = {"released": [device_key(d) for d in release], "bound": keys}

    def bind_device(self, actor: str, patient_id: str, device_id: int,
                    at_us: int | None = None) -> None:
        """Bind one more device to an admitted patient (``available`` devices only)."""
        self._device_change(actor, "bind_device", patient_id, (), (device_id,), at_us)

    def release_device(self, actor: str, patient_id: str, device_id: int,
                       at_us: int | None = None) -> None:
        """Unbind a device from the patient; it goes to ``to_clean``."""
        self._device_change(actor, "release_device", patient_id, (device_id,), (), at_us)

    def swap_device(self, actor: str, patient_id: str, old_device_id: int, new_device_id: int,
                    at_us: int | None = None) -> None:
        """Replace a bound device by an available one at the same instant (one record)."""
        if old_device_id == new_device_id:
            raise UsageError("swap_device needs two different devices")
        self._device_change(actor, "swap_device", patient_id, (old_device_id,),
                            (new_device_id,), at_us)

    def discharge(self, actor: str, patient_id: str, at_us: int | None = None) -> None:
        """End the stay: the placement closes and every bound device is released."""
        _check_ids(patient_id)
        with self._operation(actor, "discharge", Resource.patient(patient_id), at_us) as op:
            current = _lock_patient(op, patient_id)
            if current is None:
                raise UsageError(f"patient {patient_id!r} is not admitted")
            op.require(_MANAGE, Resource.patient(patient_id))
            keys = [k for (k,) in op.tx.all("SELECT device_id FROM bindings WHERE patient_id = ? "
                                            "AND end_us IS NULL ORDER BY device_id",
                                            (patient_id,))]
            for key in keys:
                _release(op, patient_id, key)
            op.tx.execute("UPDATE placements SET end_us = ? WHERE id = ?",
                          (op.at_us, current[0]))
            op.detail = {"released": keys, "from_ward": current[1]}
