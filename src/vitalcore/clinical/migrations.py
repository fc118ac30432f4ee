"""Versioned schema migrations of the clinical metadata database.

Each :class:`Migration` has a number (consecutive from 1) and the statements that take
the schema from the previous number to it, written once for both dialects (``{pk}`` is
the auto-numbered primary key column). :func:`migrate` applies the missing ones, each in
its own transaction together with its row in ``schema_migrations``, so an interrupted
upgrade leaves the database at the last complete version. Running it again is a no-op.
A database whose version is newer than :data:`SCHEMA_VERSION` is refused: this code
does not know its schema.

Add a migration by appending to :data:`MIGRATIONS`; never edit a released one.

Modules built on the clinical database (device lifecycle, work orders) keep their own
tables under their own ``component`` name: their versions are tracked in a table
``schema_migrations_<component>``, so each numbers its migrations from 1 independently
of the clinical schema and of each other.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from ..errors import InternalError, StorageError
from .db import Database, Tx

__all__ = ["Migration", "MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

_PK = {
    "sqlite": "id INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgres": "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

#: PostgreSQL advisory lock key serialising concurrent upgrades from several nodes.
_PG_LOCK_KEY = 0x76_63_6C_69  # "vcli"


class Migration(NamedTuple):
    """One schema step: ``version`` (1, 2, ...), a ``name``, its ``statements``."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "organisation, devices, bindings, users, audit", (
        """CREATE TABLE hospitals (
            id TEXT PRIMARY KEY, name TEXT NOT NULL)""",
        """CREATE TABLE campuses (
            id TEXT PRIMARY KEY,
            hospital_id TEXT NOT NULL REFERENCES hospitals(id),
            name TEXT NOT NULL)""",
        """CREATE TABLE wards (
            id TEXT PRIMARY KEY,
            campus_id TEXT NOT NULL REFERENCES campuses(id),
            name TEXT NOT NULL)""",
        """CREATE TABLE beds (
            id TEXT PRIMARY KEY,
            ward_id TEXT NOT NULL REFERENCES wards(id),
            label TEXT NOT NULL)""",
        """CREATE TABLE patients (
            id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL,
            created_us BIGINT NOT NULL,
            last_event_us BIGINT NOT NULL)""",
        """CREATE TABLE placements (
            {pk},
            patient_id TEXT NOT NULL REFERENCES patients(id),
            ward_id TEXT REFERENCES wards(id),
            bed_id TEXT REFERENCES beds(id),
            from_ward_id TEXT REFERENCES wards(id),
            to_ward_id TEXT REFERENCES wards(id),
            start_us BIGINT NOT NULL,
            end_us BIGINT,
            CHECK (end_us IS NULL OR end_us >= start_us),
            CHECK (bed_id IS NULL OR ward_id IS NOT NULL))""",
        "CREATE UNIQUE INDEX placements_open ON placements(patient_id) WHERE end_us IS NULL",
        """CREATE UNIQUE INDEX placements_bed_open ON placements(bed_id)
            WHERE end_us IS NULL AND bed_id IS NOT NULL""",
        "CREATE INDEX placements_patient ON placements(patient_id, start_us)",
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            hospital_id TEXT REFERENCES hospitals(id),
            state TEXT NOT NULL,
            secret_hash TEXT,
            last_event_us BIGINT NOT NULL)""",
        """CREATE TABLE device_groups (
            id TEXT PRIMARY KEY,
            hospital_id TEXT REFERENCES hospitals(id),
            name TEXT NOT NULL)""",
        """CREATE TABLE device_group_members (
            group_id TEXT NOT NULL REFERENCES device_groups(id),
            device_id TEXT NOT NULL REFERENCES devices(id),
            PRIMARY KEY (group_id, device_id))""",
        """CREATE TABLE bindings (
            {pk},
            patient_id TEXT NOT NULL REFERENCES patients(id),
            device_id TEXT NOT NULL REFERENCES devices(id),
            start_us BIGINT NOT NULL,
            end_us BIGINT,
            CHECK (end_us IS NULL OR end_us >= start_us))""",
        "CREATE UNIQUE INDEX bindings_open ON bindings(device_id) WHERE end_us IS NULL",
        "CREATE INDEX bindings_patient ON bindings(patient_id, start_us)",
        "CREATE INDEX bindings_device ON bindings(device_id, start_us)",
        """CREATE TABLE device_events (
            {pk},
            device_id TEXT NOT NULL REFERENCES devices(id),
            kind TEXT NOT NULL,
            at_us BIGINT NOT NULL,
            by_user TEXT NOT NULL,
            state_after TEXT NOT NULL,
            reference TEXT,
            passed INTEGER,
            note TEXT NOT NULL)""",
        "CREATE INDEX device_events_device ON device_events(device_id, at_us)",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            display_name TEXT NOT NULL,
            disabled INTEGER NOT NULL,
            created_us BIGINT NOT NULL)""",
        """CREATE TABLE role_grants (
            {pk},
            user_name TEXT NOT NULL REFERENCES users(name),
            role TEXT NOT NULL,
            scope_kind TEXT NOT NULL,
            scope_id TEXT,
            valid_from_us BIGINT,
            valid_until_us BIGINT,
            granted_by TEXT NOT NULL,
            granted_us BIGINT NOT NULL,
            revoked_us BIGINT)""",
        """CREATE TABLE audit (
            {pk},
            at_us BIGINT NOT NULL,
            recorded_us BIGINT NOT NULL,
            user_name TEXT NOT NULL,
            action TEXT NOT NULL,
            permission TEXT,
            resource TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL)""",
    )),
    Migration(2, "indexes for scope and audit queries", (
        "CREATE INDEX placements_ward ON placements(ward_id, start_us)",
        "CREATE INDEX role_grants_user ON role_grants(user_name)",
        "CREATE INDEX audit_time ON audit(at_us)",
        "CREATE INDEX audit_user ON audit(user_name, at_us)",
    )),
    Migration(3, "NIBP schedules", (
        """CREATE TABLE bp_schedules (
            patient_id TEXT PRIMARY KEY REFERENCES patients(id),
            tz TEXT NOT NULL,
            day_start TEXT NOT NULL,
            day_end TEXT NOT NULL,
            day_interval_us BIGINT NOT NULL,
            night_interval_us BIGINT NOT NULL,
            set_by TEXT NOT NULL,
            set_us BIGINT NOT NULL)""",
    )),
    Migration(4, "per-grant permission limits", (
        # NULL: every permission of the role; else a comma-separated subset of them
        "ALTER TABLE role_grants ADD COLUMN permissions TEXT",
    )),
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = MIGRATIONS[-1].version

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)"""


def _table(component: str) -> str:
    if component == "clinical":
        return "schema_migrations"
    if not component.isidentifier() or not component.islower():
        raise InternalError(f"migration component must be a lower-case identifier, "
                            f"got {component!r}")
    return f"schema_migrations_{component}"


def _check_sequence(migrations: tuple[Migration, ...]) -> None:
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise InternalError("migrations must be numbered 1, 2, 3, ... without gaps")


def _current(tx: Tx, table: str) -> int:
    return int(tx.scalar(f"SELECT MAX(version) FROM {table}") or 0)


def schema_version(db: Database, component: str = "clinical") -> int:
    """The schema version of ``component`` in ``db`` (0 where it has no tables yet)."""
    table = _table(component)
    with db.transaction() as tx:
        tx.execute(_CREATE_TABLE.format(table=table))
        return _current(tx, table)


def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS,
            target: int | None = None, component: str = "clinical") -> int:
    """Bring ``component``'s schema in ``db`` to ``target`` (default: the newest migration).

    Returns the version reached. Idempotent. Raises
    :class:`~vitalcore.errors.StorageError` if the database is newer than the newest
    migration known here (refusing to run on a schema it does not know).
    """
    table = _table(component)
    _check_sequence(migrations)
    newest = migrations[-1].version if migrations else 0
    target = newest if target is None else target
    if not 0 <= target <= newest:
        raise InternalError(f"migration target {target} outside 0..{newest}")
    while True:
        with db.transaction() as tx:
            if tx.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
            tx.execute(_CREATE_TABLE.format(table=table))
            current = _current(tx, table)
            if current > newest:
                raise StorageError(
                    f"{component} database schema version {current} is newer than this "
                    f"vitalcore understands ({newest}): upgrade vitalcore")
            if current >= target:
                return current
            step = migrations[current]
            for statement in step.statements:
                tx.execute(statement.replace("{pk}", _PK[tx.dialect]))
            tx.execute(f"INSERT INTO {table} (version, name, applied_us) "
                       "VALUES (?, ?, ?)", (step.version, step.name, time.time_ns() // 1000))
