"""The fleet tables live on the clinical database under their own migration sequence."""

from __future__ import annotations

import pytest

from vitalcore.clinical import Database, migrate, open_store, schema_version
from vitalcore.clinical.migrations import Migration
from vitalcore.errors import StorageError
from vitalcore.fleet import FLEET_MIGRATIONS, open_fleet


def test_migrations_on_a_file_database_are_idempotent(tmp_path):
    path = tmp_path / "c.sqlite"
    store = open_store(path)
    tracker = open_fleet(store)
    assert schema_version(store.db, "fleet") == len(FLEET_MIGRATIONS)
    assert migrate(store.db, FLEET_MIGRATIONS, component="fleet") == len(FLEET_MIGRATIONS)
    assert tracker.assets() == []
    store.close()
    db = Database.sqlite(path)
    try:
        assert schema_version(db, "fleet") == len(FLEET_MIGRATIONS)
        assert schema_version(db) >= 1  # the clinical sequence is separate
    finally:
        db.close()


def test_a_newer_fleet_schema_is_refused(tmp_path):
    store = open_store(tmp_path / "c.sqlite")
    newer = FLEET_MIGRATIONS + (Migration(len(FLEET_MIGRATIONS) + 1, "future", ()),)
    migrate(store.db, newer, component="fleet")
    with pytest.raises(StorageError, match="newer than this vitalcore understands"):
        open_fleet(store)
    store.close()
