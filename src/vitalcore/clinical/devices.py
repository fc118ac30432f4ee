"""Devices, device groups and the reprocessing cycle between patients (a store part).

A device released from a patient must be cleaned and disinfected, then pass a function
check against a reference, before it can be bound again (:class:`DeviceState`). Each
step is a :class:`DeviceEvent` with who and when, written in the same transaction as
the state change. Registering devices, groups and device secrets needs
``manage_devices``; cleaning, checks and repairs need ``maintain_devices`` on the device.
"""

from __future__ import annotations

from ..errors import UsageError
from ._secrets import hash_secret
from .core import StoreCore
from .db import Tx
from .model import (
    DeviceEvent,
    DeviceInfo,
    DeviceState,
    Permission,
    Resource,
    check_id,
    check_name,
    device_key,
)

__all__ = ["DevicePart", "device_event", "lock_device"]

_S = DeviceState


def device_event(tx: Tx, key: str, kind: str, t: int, user: str, state_after: DeviceState,
                 reference: str | None = None, passed: bool | None = None,
                 note: str = "") -> None:
    """Set the device's state and time, and record the step that did it."""
    tx.execute("UPDATE devices SET state = ?, last_event_us = ? WHERE id = ?",
               (state_after.value, t, key))
    tx.execute("INSERT INTO device_events (device_id, kind, at_us, by_user, state_after, "
               "reference, passed, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (key, kind, t, user, state_after.value, reference,
                None if passed is None else int(passed), note))


def lock_device(tx: Tx, key: str) -> tuple[DeviceState, int]:
    """``(state, last_event_us)`` of a device, row locked for this transaction."""
    row = tx.one("SELECT state, last_event_us FROM devices WHERE id = ?" + tx.for_update, (key,))
    if row is None:
        raise UsageError(f"unknown device {key}")
    return DeviceState(row[0]), int(row[1])


def _check_note(note: object) -> str:
    if not isinstance(note, str) or len(note) > 2000:
        raise UsageError("note must be a string of at most 2000 characters")
    return note


class DevicePart(StoreCore):
    """Device registry, groups and reprocessing steps."""

    def register_device(self, actor: str, device_id: int, model: str,
                        hospital_id: str | None = None, secret: str | None = None,
                        at_us: int | None = None) -> None:
        """Register a device (``manage_devices`` on its hospital, or globally if none).

        It starts in ``to_check``: a function check must pass before its first binding.
        ``secret``, if given, is its MQTT/CoAP password (stored as a scrypt hash).
        """
        key = device_key(device_id)
        check_name(model, "model")
        hashed = None if secret is None else hash_secret(secret, self.log2_n)
        if hospital_id is not None:
            check_id(hospital_id, "hospital")
        owner = Resource.everything() if hospital_id is None else Resource.hospital(hospital_id)
        with self._operation(actor, "register_device", owner,
                             at_us) as op:
            op.require(Permission.MANAGE_DEVICES, owner)
            if op.tx.one("SELECT 1 FROM devices WHERE id = ?", (key,)):
                raise UsageError(f"device {key} is registered already")
            op.tx.execute("INSERT INTO devices (id, model, hospital_id, state, secret_hash, "
                          "last_event_us) VALUES (?, ?, ?, ?, ?, ?)",
                          (key, model, hospital_id, _S.TO_CHECK.value, hashed, op.at_us))
            device_event(op.tx, key, "registered", op.at_us, actor, _S.TO_CHECK, note=model)
            op.detail = {"device": key, "model": model}

    def set_device_secret(self, actor: str, device_id: int, secret: str,
                          at_us: int | None = None) -> None:
        """Set or replace the device's MQTT/CoAP secret (``manage_devices`` on it)."""
        key = device_key(device_id)
        hashed = hash_secret(secret, self.log2_n)
        with self._operation(actor, "set_device_secret", Resource.device(device_id),
                             at_us) as op:
            op.require(Permission.MANAGE_DEVICES, Resource.device(device_id))
            op.tx.execute("UPDATE devices SET secret_hash = ? WHERE id = ?", (hashed, key))

    def _step(self, actor: str, action: str, device_id: int, expect: DeviceState,
              after: DeviceState, kind: str, at_us: int | None, reference: str | None = None,
              passed: bool | None = None, note: str = "") -> None:
        key = device_key(device_id)
        _check_note(note)
        with self._operation(actor, action, Resource.device(device_id), at_us) as op:
            state, last = lock_device(op.tx, key)
            op.require(Permission.MAINTAIN_DEVICES, Resource.device(device_id))
            if state is not expect:
                raise UsageError(f"device {key} is {state.value}, not {expect.value}: "
                                 f"cannot record {kind}")
            self._require_time_order(last, op.at_us, f"device {key}")
            device_event(op.tx, key, kind, op.at_us, actor, after, reference, passed, note)
            op.detail = {"device": key, "state": after.value}

    def record_cleaning(self, actor: str, device_id: int, note: str = "",
                        at_us: int | None = None) -> None:
        """Record cleaning and disinfection: ``to_clean`` → ``to_check``."""
        self._step(actor, "record_cleaning", device_id, _S.TO_CLEAN, _S.TO_CHECK, "cleaned",
                   at_us, note=note)

    def record_function_check(self, actor: str, device_id: int, passed: bool, reference: str,
                              note: str = "", at_us: int | None = None) -> None:
        """Record a function check against ``reference`` (e.g. a simulator's serial).

        ``to_check`` → ``available`` if ``passed``, else ``out_of_service``.
        """
        if not isinstance(passed, bool):
            raise UsageError(f"passed must be a bool, got {passed!r}")
        check_id(reference, "reference")
        self._step(actor, "record_function_check", device_id, _S.TO_CHECK,
                   _S.AVAILABLE if passed else _S.OUT_OF_SERVICE, "checked", at_us,
                   reference=reference, passed=passed, note=note)

    def record_repair(self, actor: str, device_id: int, note: str,
                      at_us: int | None = None) -> None:
        """Record a repair of an ``out_of_service`` device; it goes to ``to_clean``."""
        if not note:
            raise UsageError("a repair needs a note saying what was done")
        self._step(actor, "record_repair", device_id, _S.OUT_OF_SERVICE, _S.TO_CLEAN,
                   "repaired", at_us, note=note)

    # -- groups -----------------------------------------------------------------------
    def create_device_group(self, actor: str, group_id: str, name: str,
                            hospital_id: str | None = None, at_us: int | None = None) -> None:
        """Create a device group (``manage_devices`` on its hospital, or globally)."""
        check_id(group_id, "device group")
        check_name(name, "group name")
        if hospital_id is not None:
            check_id(hospital_id, "hospital")
        owner = Resource.everything() if hospital_id is None else Resource.hospital(hospital_id)
        with self._operation(actor, "create_device_group", owner, at_us) as op:
            op.require(Permission.MANAGE_DEVICES, owner)
            if op.tx.one("SELECT 1 FROM device_groups WHERE id = ?", (group_id,)):
                raise UsageError(f"device group {group_id!r} exists already")
            op.tx.execute("INSERT INTO device_groups (id, hospital_id, name) VALUES (?, ?, ?)",
                          (group_id, hospital_id, name))

    def set_group_member(self, actor: str, group_id: str, device_id: int, member: bool = True,
                         at_us: int | None = None) -> None:
        """Add a device to a group, or remove it (``manage_devices`` on both)."""
        key = device_key(device_id)
        check_id(group_id, "device group")
        with self._operation(actor, "set_group_member", Resource.device_group(group_id),
                             at_us) as op:
            op.require(Permission.MANAGE_DEVICES, Resource.device_group(group_id))
            op.require(Permission.MANAGE_DEVICES, Resource.device(device_id))
            if member:
                if not op.tx.one("SELECT 1 FROM device_group_members WHERE group_id = ? "
                                 "AND device_id = ?", (group_id, key)):
                    op.tx.execute("INSERT INTO device_group_members (group_id, device_id) "
                                  "VALUES (?, ?)", (group_id, key))
            else:
                op.tx.execute("DELETE FROM device_group_members WHERE group_id = ? "
                              "AND device_id = ?", (group_id, key))
            op.detail = {"device": key, "member": bool(member)}

    # -- reading ----------------------------------------------------------------------
    def device(self, device_id: int) -> DeviceInfo:
        """The device's registry entry and current state (UsageError if unknown)."""
        key = device_key(device_id)
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT model, hospital_id, state FROM devices WHERE id = ?", (key,))
        if row is None:
            raise UsageError(f"unknown device {key}")
        return DeviceInfo(device_id, row[0], row[1], DeviceState(row[2]))

    def devices_in_state(self, state: DeviceState | str) -> list[int]:
        """Ids of the devices in ``state`` now, ascending."""
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT id FROM devices WHERE state = ? ORDER BY id",
                          (DeviceState(state).value,))
        return [int(k, 16) for (k,) in rows]

    def device_history(self, actor: str, device_id: int) -> list[DeviceEvent]:
        """Every recorded step of the device, in order (``view_device_archive``; audited)."""
        key = device_key(device_id)
        with self._operation(actor, "device_history", Resource.device(device_id), None) as op:
            op.require(Permission.VIEW_DEVICE_ARCHIVE, Resource.device(device_id))
            rows = op.tx.all("SELECT kind, at_us, by_user, state_after, reference, passed, note "
                             "FROM device_events WHERE device_id = ? ORDER BY id", (key,))
        return [DeviceEvent(device_id, k, t, u, DeviceState(s), r,
                            None if p is None else bool(p), n) for k, t, u, s, r, p, n in rows]

    def device_secret_hash(self, device_id: int) -> str | None:
        """The scrypt hash of the device's secret, or None (for login bridges)."""
        with self.db.transaction(write=False) as tx:
            return tx.scalar("SELECT secret_hash FROM devices WHERE id = ?",
                             (device_key(device_id),))
