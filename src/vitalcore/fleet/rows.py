"""Database rows of assets and events ↔ the value types of :mod:`.model` (internal)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ..clinical.db import Tx
from ..errors import InternalError
from .accounting import CounterState
from .model import (
    DEFAULT_MODELS,
    HOUR_S,
    Alert,
    Asset,
    AssetStatus,
    EventKind,
    Kind,
    LifecycleEvent,
    ModelSpec,
)

__all__ = ["AssetRow", "ASSET_COLUMNS", "load_asset", "save_asset", "Rules", "event_row",
           "EVENT_COLUMNS", "dev_key", "dev_int"]

ASSET_COLUMNS = ("id, kind, serial, device_id, model, hospital_id, status, registered_by, "
                 "registered_us, commissioned_us, first_seen_us, last_seen_us, installed_on, "
                 "total_s, opening_s, raw_s, ts_us, source, resets, pending_source, "
                 "pending_raw_s, pending_ts_us, alert, replaced_by")
EVENT_COLUMNS = "id, at_us, kind, asset_id, device_id, hours_s, detail"

_DAY_US = 86_400_000_000


def dev_key(device_id: int | None) -> str | None:
    """A wire device id as the 16-hex key the clinical tables use."""
    return None if device_id is None else f"{device_id:016x}"


def dev_int(key: str | None) -> int | None:
    return None if key is None else int(key, 16)


@dataclass
class AssetRow:
    """One ``fleet_assets`` row, mutable while a transaction works on it."""

    id: int
    kind: Kind
    serial: str | None
    device_id: int | None
    model: str | None
    hospital_id: str | None
    status: AssetStatus
    registered_by: str | None
    registered_us: int | None
    commissioned_us: int | None
    first_seen_us: int | None
    last_seen_us: int | None
    installed_on: int | None
    opening_s: int | None
    counter: CounterState
    alert: Alert
    replaced_by: int | None

    @classmethod
    def from_db(cls, r: tuple) -> AssetRow:
        counter = CounterState(int(r[13]), r[15], r[16], dev_int(r[17]), int(r[18]),
                               dev_int(r[19]), r[20], r[21])
        return cls(int(r[0]), Kind(r[1]), r[2], dev_int(r[3]), r[4], r[5], AssetStatus(r[6]),
                   r[7], r[8], r[9], r[10], r[11], dev_int(r[12]), r[14], counter,
                   Alert(int(r[22])), r[23])

    @property
    def label(self) -> str:
        ident = self.serial if self.serial is not None else dev_key(self.device_id)
        return f"{self.kind.value} {ident}"


def load_asset(tx: Tx, where: str, params: tuple) -> AssetRow | None:
    row = tx.one(f"SELECT {ASSET_COLUMNS} FROM fleet_assets WHERE {where}" + tx.for_update,
                 params)
    return None if row is None else AssetRow.from_db(row)


def save_asset(tx: Tx, a: AssetRow) -> None:
    c = a.counter
    tx.execute(
        "UPDATE fleet_assets SET serial = ?, device_id = ?, model = ?, hospital_id = ?, "
        "status = ?, registered_by = ?, registered_us = ?, commissioned_us = ?, "
        "first_seen_us = ?, last_seen_us = ?, installed_on = ?, total_s = ?, opening_s = ?, "
        "raw_s = ?, ts_us = ?, source = ?, resets = ?, pending_source = ?, "
        "pending_raw_s = ?, pending_ts_us = ?, alert = ?, replaced_by = ? WHERE id = ?",
        (a.serial, dev_key(a.device_id), a.model, a.hospital_id, a.status.value,
         a.registered_by, a.registered_us, a.commissioned_us, a.first_seen_us,
         a.last_seen_us, dev_key(a.installed_on), c.total_s, a.opening_s, c.raw_s, c.ts_us,
         dev_key(c.source), c.resets, dev_key(c.pending_source), c.pending_raw_s,
         c.pending_ts_us, int(a.alert), a.replaced_by, a.id))


def insert_asset(tx: Tx, kind: Kind, serial: str | None, device_id: int | None,
                 status: AssetStatus = AssetStatus.ACTIVE) -> AssetRow:
    """Insert a new, never-seen asset and return its row."""
    new_id = tx.one("INSERT INTO fleet_assets (kind, serial, device_id, status, total_s, "
                    "resets, alert) VALUES (?, ?, ?, ?, 0, 0, 0) RETURNING id",
                    (kind.value, serial, dev_key(device_id), status.value))
    row = load_asset(tx, "id = ?", (new_id[0],)) if new_id else None
    if row is None:  # pragma: no cover - the row was just inserted
        raise InternalError("asset insert lost")
    return row


class Rules:
    """Model specs in force (one read of ``fleet_models``) and the default warning margin."""

    def __init__(self, models: Mapping[str, ModelSpec], defaults: Mapping[Kind, ModelSpec],
                 warn_fraction: float) -> None:
        self.models = dict(models)
        self.defaults = dict(defaults)
        self.warn_fraction = warn_fraction

    @classmethod
    def load(cls, tx: Tx, defaults: Mapping[Kind, ModelSpec] = DEFAULT_MODELS,
             warn_fraction: float = 0.1) -> Rules:
        models = {}
        for name, kind, limit_s, warn_s, life in tx.all(
                "SELECT name, kind, limit_s, warn_s, life_days FROM fleet_models"):
            models[name] = ModelSpec(name, Kind(kind),
                                     None if limit_s is None else limit_s // HOUR_S,
                                     None if warn_s is None else warn_s // HOUR_S, life)
        return cls(models, defaults, warn_fraction)

    def spec(self, kind: Kind, model: str | None) -> ModelSpec | None:
        found = self.models.get(model) if model is not None else None
        if found is not None and found.kind is kind:
            return found
        return self.defaults.get(kind)

    def limits(self, kind: Kind, model: str | None) -> tuple[int | None, int | None]:
        """``(limit_h, warn_h)`` of an asset (None, None without a limit)."""
        spec = self.spec(kind, model)
        if spec is None or spec.limit_h is None:
            return None, None
        warn = spec.warn_h if spec.warn_h is not None else round(spec.limit_h * self.warn_fraction)
        return spec.limit_h, min(warn, spec.limit_h)

    def alert(self, a: AssetRow) -> Alert:
        limit, warn = self.limits(a.kind, a.model)
        if limit is None:
            return Alert.OK
        total = a.counter.total_s
        if total >= limit * HOUR_S:
            return Alert.OVER_LIMIT
        if total >= (limit - (warn or 0)) * HOUR_S:
            return Alert.WARNING
        return Alert.OK

    def asset(self, a: AssetRow) -> Asset:
        limit, warn = self.limits(a.kind, a.model)
        spec = self.spec(a.kind, a.model)
        start = a.commissioned_us or a.registered_us or a.first_seen_us
        expiry = (start + spec.life_days * _DAY_US
                  if spec is not None and spec.life_days and start is not None else None)
        return Asset(a.id, a.kind, a.serial, a.device_id, a.model, a.hospital_id, a.status,
                     a.registered_by is not None, a.counter.total_s / HOUR_S, limit, warn,
                     self.alert(a), a.counter.resets, a.first_seen_us, a.last_seen_us,
                     a.device_id if a.kind is Kind.TERMINAL else a.installed_on,
                     a.commissioned_us, expiry, self._limit_at(a, limit))

    @staticmethod
    def _limit_at(a: AssetRow, limit_h: int | None) -> int | None:
        if limit_h is None or a.first_seen_us is None or a.last_seen_us is None:
            return None
        left_s = limit_h * HOUR_S - a.counter.total_s
        if left_s <= 0:
            return a.last_seen_us
        used_s = a.counter.total_s - (a.opening_s or 0)
        span_us = a.last_seen_us - a.first_seen_us
        if used_s <= 0 or span_us <= 0:
            return None
        return a.last_seen_us + int(left_s * span_us / used_s)


def event_row(r: tuple, assets: Mapping[int, tuple[Kind, str | None]]) -> LifecycleEvent:
    """A ``fleet_events`` row (``EVENT_COLUMNS``) as a :class:`LifecycleEvent`."""
    eid, at_us, kind, asset_id, device, hours_s, detail = r
    akind, serial = assets.get(asset_id, (None, None)) if asset_id is not None else (None, None)
    return LifecycleEvent(int(eid), int(at_us), EventKind(kind), asset_id, akind, serial,
                          dev_int(device), None if hours_s is None else hours_s / HOUR_S,
                          json.loads(detail))
