"""Schema of the lifecycle tables, on the clinical database (component ``"fleet"``).

Apply with ``migrate(db, FLEET_MIGRATIONS, component="fleet")``
(:func:`vitalcore.clinical.migrate`); :func:`vitalcore.fleet.open_fleet` does it. Never
edit a released migration: append one.

Tables:

``fleet_models``
    model name → kind, replacement limit and warning margin (s), service life (days).
``fleet_assets``
    one row per terminal or accessory: identity (kind + serial, unique per kind; a
    terminal also has its wire device id, unique among terminals in service), model,
    fleet status, the accounting state of its counter (:mod:`.accounting`) and the
    alert level reached (so an event fires once per crossing, also across restarts).
``fleet_installs``
    which terminal (device id) an accessory was reported in over ``[start, end)``.
``fleet_events``
    lifecycle events (warnings, resets, moves, unknown devices, ...), in order.
``fleet_usage``
    powered-on seconds of terminals per ward (``''``: transport or unbound) and month.
``fleet_unknown``
    device ids that sent STATUS frames without being registered.
"""

from __future__ import annotations

from ..clinical.migrations import Migration

__all__ = ["FLEET_MIGRATIONS", "FLEET_COMPONENT"]

FLEET_COMPONENT = "fleet"

FLEET_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "assets, models, installs, events, usage", (
        """CREATE TABLE fleet_models (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            limit_s BIGINT,
            warn_s BIGINT,
            life_days INTEGER,
            CHECK (limit_s IS NULL OR limit_s > 0),
            CHECK (warn_s IS NULL OR warn_s >= 0))""",
        """CREATE TABLE fleet_assets (
            {pk},
            kind TEXT NOT NULL,
            serial TEXT,
            device_id TEXT,
            model TEXT,
            hospital_id TEXT,
            status TEXT NOT NULL,
            registered_by TEXT,
            registered_us BIGINT,
            commissioned_us BIGINT,
            first_seen_us BIGINT,
            last_seen_us BIGINT,
            installed_on TEXT,
            total_s BIGINT NOT NULL,
            opening_s BIGINT,
            raw_s BIGINT,
            ts_us BIGINT,
            source TEXT,
            resets INTEGER NOT NULL,
            pending_source TEXT,
            pending_raw_s BIGINT,
            pending_ts_us BIGINT,
            alert INTEGER NOT NULL,
            replaced_by BIGINT,
            CHECK (serial IS NOT NULL OR device_id IS NOT NULL),
            CHECK (total_s >= 0))""",
        "CREATE UNIQUE INDEX fleet_assets_serial ON fleet_assets(kind, serial) "
        "WHERE serial IS NOT NULL",
        "CREATE UNIQUE INDEX fleet_assets_device ON fleet_assets(device_id) "
        "WHERE device_id IS NOT NULL AND status <> 'replaced' AND status <> 'retired'",
        """CREATE TABLE fleet_installs (
            {pk},
            asset_id BIGINT NOT NULL REFERENCES fleet_assets(id),
            device_id TEXT NOT NULL,
            start_us BIGINT NOT NULL,
            end_us BIGINT,
            CHECK (end_us IS NULL OR end_us >= start_us))""",
        "CREATE UNIQUE INDEX fleet_installs_open ON fleet_installs(asset_id) "
        "WHERE end_us IS NULL",
        "CREATE INDEX fleet_installs_asset ON fleet_installs(asset_id, start_us)",
        """CREATE TABLE fleet_events (
            {pk},
            at_us BIGINT NOT NULL,
            recorded_us BIGINT NOT NULL,
            kind TEXT NOT NULL,
            asset_id BIGINT REFERENCES fleet_assets(id),
            device_id TEXT,
            hours_s BIGINT,
            detail TEXT NOT NULL)""",
        "CREATE INDEX fleet_events_asset ON fleet_events(asset_id, id)",
        """CREATE TABLE fleet_usage (
            ward_id TEXT NOT NULL,
            month TEXT NOT NULL,
            asset_id BIGINT NOT NULL REFERENCES fleet_assets(id),
            seconds BIGINT NOT NULL,
            PRIMARY KEY (ward_id, month, asset_id))""",
        """CREATE TABLE fleet_unknown (
            device_id TEXT PRIMARY KEY,
            first_seen_us BIGINT NOT NULL,
            last_seen_us BIGINT NOT NULL,
            frames BIGINT NOT NULL)""",
    )),
)
