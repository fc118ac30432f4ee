"""Schema of the service desk on the clinical database (component ``"service"``).

Applied with ``migrate(db, SERVICE_MIGRATIONS, component="service")`` after the clinical
schema (the tables reference ``devices``, ``wards`` and ``users``). Append migrations;
never edit a released one. Written once for SQLite and PostgreSQL (``{pk}`` is the
auto-numbered key; ``BYTEA`` has BLOB storage on SQLite).
"""

from __future__ import annotations

from ..clinical.db import Database
from ..clinical.migrations import Migration, migrate

__all__ = ["SERVICE_MIGRATIONS", "migrate_service"]

SERVICE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "work orders, photos, escalations, vendors, associations, records", (
        """CREATE TABLE svc_orders (
            {pk},
            institution TEXT NOT NULL,
            contact TEXT NOT NULL,
            device_id TEXT NOT NULL REFERENCES devices(id),
            device_name TEXT NOT NULL,
            model TEXT NOT NULL,
            serial TEXT NOT NULL,
            in_service_us BIGINT NOT NULL,
            ward_id TEXT REFERENCES wards(id),
            floor TEXT NOT NULL,
            room TEXT NOT NULL,
            description TEXT NOT NULL,
            fault_type TEXT NOT NULL,
            request_type TEXT NOT NULL,
            severity TEXT NOT NULL,
            emergency INTEGER NOT NULL,
            channel TEXT NOT NULL,
            auto_cause TEXT,
            evidence TEXT NOT NULL,
            repeat_count INTEGER NOT NULL,
            contract TEXT NOT NULL,
            sla TEXT NOT NULL,
            team TEXT NOT NULL,
            vendor_id TEXT,
            status TEXT NOT NULL,
            created_by TEXT NOT NULL,
            fault_us BIGINT NOT NULL,
            reported_us BIGINT NOT NULL,
            notified_us BIGINT,
            responded_us BIGINT,
            started_us BIGINT,
            fixed_us BIGINT,
            verified_us BIGINT,
            verified_by TEXT,
            verification_ref TEXT,
            signed_off_us BIGINT,
            signed_off_by TEXT,
            closed_us BIGINT,
            follow_up TEXT NOT NULL,
            follow_up_due_us BIGINT,
            last_event_us BIGINT NOT NULL,
            CHECK (fault_us <= reported_us))""",
        """CREATE UNIQUE INDEX svc_orders_auto_open ON svc_orders(device_id, auto_cause)
            WHERE auto_cause IS NOT NULL AND closed_us IS NULL""",
        "CREATE INDEX svc_orders_reported ON svc_orders(reported_us)",
        "CREATE INDEX svc_orders_device ON svc_orders(device_id, reported_us)",
        "CREATE INDEX svc_orders_status ON svc_orders(status)",
        """CREATE TABLE svc_order_events (
            {pk},
            order_id BIGINT NOT NULL REFERENCES svc_orders(id),
            at_us BIGINT NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,
            note TEXT NOT NULL)""",
        "CREATE INDEX svc_order_events_order ON svc_order_events(order_id, id)",
        """CREATE TABLE svc_photos (
            {pk},
            order_id BIGINT NOT NULL REFERENCES svc_orders(id),
            sha256 TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            data BYTEA NOT NULL,
            added_us BIGINT NOT NULL,
            added_by TEXT NOT NULL,
            UNIQUE (order_id, sha256))""",
        """CREATE TABLE svc_escalations (
            {pk},
            order_id BIGINT NOT NULL REFERENCES svc_orders(id),
            milestone TEXT NOT NULL,
            deadline_us BIGINT NOT NULL,
            fired_us BIGINT NOT NULL,
            targets TEXT NOT NULL,
            UNIQUE (order_id, milestone))""",
        """CREATE TABLE svc_vendors (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            contact TEXT NOT NULL,
            invited_by TEXT NOT NULL,
            invited_us BIGINT NOT NULL)""",
        """CREATE TABLE svc_vendor_users (
            user_name TEXT PRIMARY KEY REFERENCES users(name),
            vendor_id TEXT NOT NULL REFERENCES svc_vendors(id))""",
        """CREATE TABLE svc_associations (
            {pk},
            vendor_id TEXT NOT NULL REFERENCES svc_vendors(id),
            device_id TEXT NOT NULL REFERENCES devices(id),
            scopes TEXT NOT NULL,
            valid_from_us BIGINT NOT NULL,
            valid_until_us BIGINT NOT NULL,
            grant_ids TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_us BIGINT NOT NULL,
            revoked_us BIGINT,
            revoked_by TEXT,
            warned_us BIGINT,
            CHECK (valid_until_us > valid_from_us))""",
        "CREATE INDEX svc_associations_device ON svc_associations(device_id, valid_from_us)",
        "CREATE INDEX svc_associations_vendor ON svc_associations(vendor_id, valid_from_us)",
        """CREATE TABLE svc_records (
            {pk},
            device_id TEXT NOT NULL REFERENCES devices(id),
            kind TEXT NOT NULL,
            order_id BIGINT REFERENCES svc_orders(id),
            at_us BIGINT NOT NULL,
            by_user TEXT NOT NULL,
            vendor_id TEXT REFERENCES svc_vendors(id),
            note TEXT NOT NULL)""",
        "CREATE INDEX svc_records_device ON svc_records(device_id, at_us)",
    )),
)


def migrate_service(db: Database) -> int:
    """Bring the service schema of ``db`` (already clinically migrated) up to date."""
    return migrate(db, SERVICE_MIGRATIONS, component="service")
