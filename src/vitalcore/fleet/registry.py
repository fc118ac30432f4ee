"""What users do to the fleet: models, asset registration, status, replacement, readings.

Every method is one audited operation (:mod:`vitalcore.clinical.core`): models and
registrations need ``manage_devices``, status changes, replacements and manual counter
readings ``maintain_devices`` on the asset's scope (its terminal's device, else its
hospital, else global). Bad input (duplicate serial, unknown device or asset, hours
going backwards) raises :class:`~vitalcore.errors.UsageError` and leaves an ``error``
audit record; nothing else is written.
"""

from __future__ import annotations

from ..clinical.core import Operation
from ..clinical.model import Permission, Resource, check_id, check_name, check_time, device_key
from ..errors import UsageError
from .accounting import rebase
from .core import EventBuffer
from .ingest import IngestPart, _Run
from .model import (
    HOUR_S,
    Asset,
    AssetStatus,
    EventKind,
    Kind,
    ModelSpec,
    check_serial,
    kind_of,
)
from .rows import ASSET_COLUMNS, AssetRow, dev_key, insert_asset, load_asset, save_asset

__all__ = ["RegistryPart"]

_MANAGE, _MAINTAIN = Permission.MANAGE_DEVICES, Permission.MAINTAIN_DEVICES


def _hours(value: object, what: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10_000_000:
        raise UsageError(f"{what} must be a whole number of hours in 1..10000000, got {value!r}")
    return value


class RegistryPart(IngestPart):
    """Models, registration and the fleet status of assets."""

    # -- lookups --------------------------------------------------------------------------
    def _find(self, op: Operation, kind: Kind | str, serial: str) -> AssetRow:
        k = kind_of(kind)
        check_serial(serial)
        a = load_asset(op.tx, "kind = ? AND serial = ?", (k.value, serial))
        if a is None:
            raise UsageError(f"unknown {k.value} {serial!r}")
        return a

    def asset(self, kind: Kind | str, serial: str) -> Asset:
        """The asset ``(kind, serial)`` now (UsageError if unknown). Not audited: no
        patient data."""
        k = kind_of(kind)
        check_serial(serial)
        with self.db.transaction(write=False) as tx:
            a = load_asset(tx, "kind = ? AND serial = ?", (k.value, serial))
            if a is None:
                raise UsageError(f"unknown {k.value} {serial!r}")
            return self._rules(tx).asset(a)

    def terminal(self, device_id: int) -> Asset:
        """The terminal in service under wire ``device_id`` (UsageError if none)."""
        key = device_key(device_id)
        with self.db.transaction(write=False) as tx:
            a = load_asset(tx, "device_id = ? AND status <> 'replaced' AND status <> 'retired'",
                           (key,))
            if a is None:
                raise UsageError(f"no terminal in service has device id {key}")
            return self._rules(tx).asset(a)

    def assets(self, kind: Kind | str | None = None,
               status: AssetStatus | str | None = None) -> list[Asset]:
        """Every asset (of ``kind``, in ``status``), by kind then serial."""
        sql, params = f"SELECT {ASSET_COLUMNS} FROM fleet_assets WHERE 1 = 1", ()
        if kind is not None:
            sql, params = sql + " AND kind = ?", params + (kind_of(kind).value,)
        if status is not None:
            sql, params = sql + " AND status = ?", params + (AssetStatus(status).value,)
        with self.db.transaction(write=False) as tx:
            rules = self._rules(tx)
            return [rules.asset(AssetRow.from_db(r))
                    for r in tx.all(sql + " ORDER BY kind, serial IS NULL, serial, id", params)]

    def models(self) -> list[ModelSpec]:
        """Model specs defined with :meth:`define_model`, by name."""
        with self.db.transaction(write=False) as tx:
            return sorted(self._rules(tx).models.values())

    # -- changes --------------------------------------------------------------------------
    def define_model(self, actor: str, name: str, kind: Kind | str, limit_h: int | None,
                     warn_h: int | None = None, life_days: int | None = None,
                     at_us: int | None = None) -> ModelSpec:
        """Define or change a model's replacement rules (``manage_devices``, global).

        Parameters
        ----------
        name : str
            Model name (a terminal's: its model in the clinical device registry).
        kind : Kind or str
        limit_h : int or None
            Replacement limit in powered-on hours, or None for none.
        warn_h : int, optional
            Warn this many hours before the limit (default: the tracker's fraction).
        life_days : int, optional
            Calendar service life from commissioning, days.
        """
        check_name(name, "model name")
        k = kind_of(kind)
        limit_h = _hours(limit_h, "limit_h")
        if warn_h is not None:
            if isinstance(warn_h, bool) or not isinstance(warn_h, int) or warn_h < 0:
                raise UsageError(f"warn_h must be a non-negative whole number of hours, "
                                 f"got {warn_h!r}")
            if limit_h is None or warn_h > limit_h:
                raise UsageError(f"warn_h ({warn_h} h) needs a limit_h at least as large")
        if life_days is not None and (isinstance(life_days, bool) or not isinstance(life_days, int)
                                      or not 0 < life_days <= 36_500):
            raise UsageError(f"life_days must be in 1..36500, got {life_days!r}")
        spec = ModelSpec(name, k, limit_h, warn_h, life_days)
        with self._operation(actor, "fleet_define_model", Resource.everything(), at_us) as op:
            op.require(_MANAGE, Resource.everything())
            kind_now = op.tx.scalar("SELECT kind FROM fleet_models WHERE name = ?", (name,))
            if kind_now is not None and kind_now != k.value:
                raise UsageError(f"model {name!r} is a {kind_now} model, not {k.value}")
            values = (k.value, None if limit_h is None else limit_h * HOUR_S,
                      None if warn_h is None else warn_h * HOUR_S, life_days, name)
            if kind_now is None:
                op.tx.execute("INSERT INTO fleet_models (kind, limit_s, warn_s, life_days, name) "
                              "VALUES (?, ?, ?, ?, ?)", values)
            else:
                op.tx.execute("UPDATE fleet_models SET kind = ?, limit_s = ?, warn_s = ?, "
                              "life_days = ? WHERE name = ?", values)
            op.detail = spec._asdict() | {"kind": k.value}
        return spec

    def register_asset(self, actor: str, kind: Kind | str, serial: str, *,
                       model: str | None = None, hospital_id: str | None = None,
                       device_id: int | None = None, commissioned_us: int | None = None,
                       at_us: int | None = None) -> Asset:
        """Register a terminal or accessory (``manage_devices``).

        Serials are unique per kind: registering one twice is a UsageError. An asset
        the telemetry enrolled already (seen before being registered) is adopted with
        its hours. A terminal needs ``device_id``, registered in the clinical device
        registry (its model there is the default model).
        """
        k = kind_of(kind)
        check_serial(serial)
        if model is not None:
            check_name(model, "model")
        if hospital_id is not None:
            check_id(hospital_id, "hospital")
        if commissioned_us is not None:
            check_time(commissioned_us, "commissioned_us")
        if (device_id is None) == (k is Kind.TERMINAL):
            raise UsageError("a terminal needs its device_id; an accessory has none"
                             if device_id is None else "only a terminal has a device_id")
        resource = (Resource.device(device_id) if device_id is not None
                    else Resource.hospital(hospital_id) if hospital_id is not None
                    else Resource.everything())
        with self._operation(actor, "fleet_register_asset", resource, at_us) as op:
            tx = op.tx
            if device_id is not None:
                info = tx.one("SELECT model, hospital_id FROM devices WHERE id = ?",
                              (dev_key(device_id),))
                if info is None:
                    raise UsageError(f"unknown device {device_key(device_id)}: register it in "
                                     "the clinical device registry first")
                model = model or info[0]
                hospital_id = hospital_id or info[1]
            op.require(_MANAGE, resource)
            a = load_asset(tx, "kind = ? AND serial = ?", (k.value, serial))
            if a is not None and a.registered_by is not None:
                raise UsageError(f"duplicate serial: {k.value} {serial!r} is registered "
                                 f"already (asset {a.id}, model {a.model})")
            if device_id is not None:
                a = self._adopt_terminal(op, a, device_id, serial)
            if a is None:
                a = insert_asset(tx, k, serial, device_id)
            a.serial, a.model = serial, model or a.model
            a.hospital_id = hospital_id or a.hospital_id
            a.registered_by, a.registered_us = actor, op.at_us
            a.commissioned_us = commissioned_us
            rules = self._rules(tx)
            a.alert = min(a.alert, rules.alert(a))
            save_asset(tx, a)
            op.detail = {"asset": a.id, "kind": k.value, "serial": serial, "model": a.model,
                         "adopted_hours": round(a.counter.total_s / HOUR_S, 3)}
            return rules.asset(a)

    def _adopt_terminal(self, op: Operation, a: AssetRow | None, device_id: int,
                        serial: str) -> AssetRow | None:
        on_dev = load_asset(op.tx, "device_id = ? AND status <> 'replaced' "
                            "AND status <> 'retired'", (dev_key(device_id),))
        if on_dev is None:
            return a
        if on_dev.registered_by is not None:
            raise UsageError(f"device {device_key(device_id)} belongs to terminal "
                             f"{on_dev.serial!r} already")
        if a is not None:  # pragma: no cover - an unregistered terminal has no serial
            raise UsageError(f"terminal {serial!r} exists twice")
        return on_dev

    def set_status(self, actor: str, kind: Kind | str, serial: str,
                   status: AssetStatus | str, note: str = "", at_us: int | None = None) -> Asset:
        """Put an asset in the spare pool, report it lost, retire it, or back to active
        (``maintain_devices``). Replacing is :meth:`replace`."""
        new = AssetStatus(status)
        if new is AssetStatus.REPLACED:
            raise UsageError("use replace() to replace an asset by another")
        if not isinstance(note, str) or len(note) > 2000:
            raise UsageError("note must be a string of at most 2000 characters")
        with self._operation(actor, "fleet_set_status", Resource.everything(), at_us) as op:
            a = self._find(op, kind, serial)
            op.require(_MAINTAIN, self._scope(op.tx, a))
            if a.status in (AssetStatus.REPLACED, AssetStatus.RETIRED):
                raise UsageError(f"{a.label} is {a.status.value}: its record is closed")
            old, a.status = a.status, new
            save_asset(op.tx, a)
            buf = EventBuffer(op.tx)
            buf.add(op.at_us, EventKind.STATUS, a, None, old=old.value, new=new.value,
                    by=actor, note=note)
            op.detail = {"asset": a.id, "old": old.value, "new": new.value}
            result = self._rules(op.tx).asset(a)
        self.hub.publish(buf.events)
        return result

    def replace(self, actor: str, kind: Kind | str, old_serial: str, new_serial: str,
                note: str = "", at_us: int | None = None) -> Asset:
        """Replace an asset by another of the same kind (``maintain_devices``).

        The old one becomes ``replaced`` (its record and hours are kept, with a link to
        the new one); the new one, registered now with the old one's model and hospital
        if unknown, becomes ``active``. A terminal's device id passes to the new
        terminal if it has none of its own (its counter is rebased:
        :func:`~vitalcore.fleet.accounting.rebase`).
        Returns the new asset.
        """
        if old_serial == new_serial:
            raise UsageError("replace needs two different serials")
        check_serial(new_serial)
        with self._operation(actor, "fleet_replace", Resource.everything(), at_us) as op:
            tx = op.tx
            old = self._find(op, kind, old_serial)
            op.require(_MAINTAIN, self._scope(tx, old))
            if old.status in (AssetStatus.REPLACED, AssetStatus.RETIRED):
                raise UsageError(f"{old.label} is {old.status.value} already")
            new = load_asset(tx, "kind = ? AND serial = ?", (old.kind.value, new_serial))
            if new is not None and new.status in (AssetStatus.REPLACED, AssetStatus.RETIRED):
                raise UsageError(f"{new.label} is {new.status.value}: it cannot replace")
            old.status, device = AssetStatus.REPLACED, old.device_id
            save_asset(tx, old)  # frees the device id before the new terminal takes it
            if new is None:
                new = insert_asset(tx, old.kind, new_serial, None)
            new.model = new.model or old.model
            new.hospital_id = new.hospital_id or old.hospital_id
            new.registered_by = new.registered_by or actor
            new.registered_us = new.registered_us or op.at_us
            new.status = AssetStatus.ACTIVE
            if old.kind is Kind.TERMINAL and device is not None and new.device_id is None:
                new.device_id = device
                rebase(new.counter, device)
            save_asset(tx, new)
            old.replaced_by = new.id
            save_asset(tx, old)
            buf = EventBuffer(tx)
            buf.add(op.at_us, EventKind.STATUS, old, device, old="active", new="replaced",
                    by=actor, replaced_by=new_serial, note=note)
            op.detail = {"old": old.id, "new": new.id}
            result = self._rules(tx).asset(new)
        self.hub.publish(buf.events)
        return result

    def rebind_terminal(self, actor: str, serial: str, device_id: int,
                        at_us: int | None = None) -> Asset:
        """A terminal now reports under another wire device id (re-provisioned, new
        mainboard): its hours continue; the new counter is rebased (``manage_devices``)."""
        key = device_key(device_id)
        with self._operation(actor, "fleet_rebind_terminal", Resource.device(device_id),
                             at_us) as op:
            tx = op.tx
            a = self._find(op, Kind.TERMINAL, serial)
            if tx.one("SELECT 1 FROM devices WHERE id = ?", (key,)) is None:
                raise UsageError(f"unknown device {key}: register it in the clinical device "
                                 "registry first")
            op.require(_MANAGE, Resource.device(device_id))
            other = load_asset(tx, "device_id = ? AND status <> 'replaced' "
                               "AND status <> 'retired'", (key,))
            if other is not None and other.id != a.id:
                raise UsageError(f"device {key} belongs to {other.label} already")
            old, a.device_id = a.device_id, device_id
            rebase(a.counter, device_id)
            save_asset(tx, a)
            op.detail = {"asset": a.id, "old_device": dev_key(old), "device": key}
            return self._rules(tx).asset(a)

    def record_reading(self, actor: str, kind: Kind | str, serial: str, raw_s: int,
                       ts_us: int, *, reset: bool = False, at_us: int | None = None) -> Asset:
        """Enter a counter reading taken with a service tool (``maintain_devices``).

        The reading goes through the same accounting as telemetry. A reading older than
        the last one, or lower than it without ``reset=True`` (hours going backwards),
        is refused with a UsageError (audited); with ``reset=True`` a lower reading is
        credited as a counter reset.
        """
        check_time(ts_us, "ts_us")
        if isinstance(raw_s, bool) or not isinstance(raw_s, int) or not 0 <= raw_s < 1 << 32:
            raise UsageError(f"raw_s must be a counter value in 0..2^32-1 s, got {raw_s!r}")
        with self._operation(actor, "fleet_record_reading", Resource.everything(), at_us) as op:
            tx = op.tx
            a = self._find(op, kind, serial)
            op.require(_MAINTAIN, self._scope(tx, a))
            c = a.counter
            if c.ts_us is not None and ts_us <= c.ts_us:
                raise UsageError(f"{a.label}: reading at {ts_us} is not newer than the last "
                                 f"one ({c.ts_us})")
            if c.raw_s is not None and raw_s < c.raw_s and not reset:
                raise UsageError(f"{a.label}: hours going backwards ({raw_s} s < last "
                                 f"{c.raw_s} s); pass reset=True if the counter was reset")
            # same source as the last reading: a lower value is a reset, never "suspect"
            source = c.source if c.source is not None else 0
            run = _Run(tx, self._rules(tx))
            credited = self._credit(run, a, raw_s, ts_us, source)
            save_asset(tx, a)
            op.detail = {"asset": a.id, "raw_s": raw_s, "ts_us": ts_us, "reset": reset,
                         "credited_s": credited}
            result = self._rules(tx).asset(a)
        self.hub.publish(run.buf.events)
        return result

