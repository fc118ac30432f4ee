"""The database shim and the versioned migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest

from vitalcore.clinical import SCHEMA_VERSION, Database, migrate, open_store, schema_version
from vitalcore.clinical.migrations import MIGRATIONS, Migration
from vitalcore.errors import InternalError, StorageError, UsageError


def _db(target: str) -> Database:
    if "host=" in target:
        return Database.postgres(target)
    return Database.sqlite(target)


def test_fresh_database_reaches_the_newest_version_idempotently(backend):
    target = backend()
    db = _db(target)
    assert schema_version(db) == 0
    assert migrate(db) == SCHEMA_VERSION == len(MIGRATIONS)
    assert migrate(db) == SCHEMA_VERSION  # a second run is a no-op
    with db.transaction() as tx:
        rows = tx.all("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in MIGRATIONS]
    db.close()
    with open_store(target) as store:  # reopening migrates nothing
        assert schema_version(store.db) == SCHEMA_VERSION


def test_upgrade_keeps_data(backend):
    db = _db(backend())
    assert migrate(db, target=1) == 1
    with db.transaction() as tx:
        tx.execute("INSERT INTO hospitals (id, name) VALUES (?, ?)", ("H1", "old"))
    assert migrate(db) == SCHEMA_VERSION
    with db.transaction() as tx:
        assert tx.all("SELECT id, name FROM hospitals") == [("H1", "old")]
    db.close()


def test_newer_database_is_refused(backend):
    target = backend()
    db = _db(target)
    migrate(db)
    with db.transaction() as tx:
        tx.execute("INSERT INTO schema_migrations (version, name, applied_us) VALUES (?, ?, ?)",
                   (SCHEMA_VERSION + 1, "from the future", 0))
    db.close()
    with pytest.raises(StorageError, match="newer"):
        open_store(target)


def test_failed_migration_leaves_the_previous_version(backend):
    db = _db(backend())
    broken = MIGRATIONS[:1] + (Migration(2, "broken", (
        "CREATE TABLE half_done (x INTEGER)", "CREATE TABLE nonsense (",)),)
    with pytest.raises(StorageError):
        migrate(db, broken)
    assert schema_version(db) == 1
    with pytest.raises(StorageError, match="half_done"):  # its first statement rolled back
        with db.transaction() as tx:
            tx.one("SELECT * FROM half_done")
    with pytest.raises(InternalError):
        migrate(db, MIGRATIONS[:1] + (Migration(3, "gap", ()),))
    db.close()


def test_components_number_their_migrations_independently(backend):
    db = _db(backend())
    migrate(db)
    extra = (Migration(1, "lifecycle tables", ("CREATE TABLE extra_things (x INTEGER)",)),)
    assert migrate(db, extra, component="extra") == 1
    assert schema_version(db, "extra") == 1
    assert schema_version(db) == SCHEMA_VERSION  # the clinical schema is untouched
    assert migrate(db, extra, component="extra") == 1  # idempotent
    with pytest.raises(InternalError, match="component"):
        migrate(db, extra, component="Bad; DROP")
    db.close()


def test_transactions_are_all_or_nothing(backend):
    db = _db(backend())
    migrate(db)
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO hospitals (id, name) VALUES (?, ?)", ("H1", "a"))
            raise RuntimeError("crash in the middle")
    with pytest.raises(UsageError, match="conflicting"):
        with db.transaction() as tx:
            tx.execute("INSERT INTO hospitals (id, name) VALUES (?, ?)", ("H2", "b"))
            tx.execute("INSERT INTO hospitals (id, name) VALUES (?, ?)", ("H2", "c"))
    with pytest.raises(UsageError, match="nested"):
        with db.transaction(), db.transaction():
            pass
    with db.transaction() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM hospitals") == 0
        with pytest.raises(UsageError, match="portable"):  # refused on both dialects
            tx.execute("SELECT 1 WHERE 'a' LIKE '%'")
    db.close()


def test_sqlite_file_is_in_wal_mode(tmp_path):
    path = tmp_path / "c.sqlite"
    open_store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with pytest.raises(StorageError):
        open_store(tmp_path / "missing-dir" / "c.sqlite")
    with pytest.raises(UsageError):
        open_store("")


def test_unreachable_postgres_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError):
        open_store(f"host={tmp_path} dbname=nothing connect_timeout=2")
