"""The service schema: its own migration sequence on the clinical database, both backends."""

from __future__ import annotations

import pytest

from vitalcore.clinical import migrate, open_store, schema_version
from vitalcore.errors import StorageError
from vitalcore.service import SERVICE_MIGRATIONS, ServiceDesk, migrate_service


def test_service_migrations_are_separate_idempotent_and_refuse_newer(backend):
    store = open_store(backend())
    try:
        clinical = schema_version(store.db)
        ServiceDesk(store.db)
        assert schema_version(store.db, "service") == len(SERVICE_MIGRATIONS) == 1
        assert migrate_service(store.db) == 1
        assert migrate(store.db, SERVICE_MIGRATIONS, component="service") == 1
        assert schema_version(store.db) == clinical  # the clinical sequence is untouched
        with store.db.transaction() as tx:
            tx.execute("INSERT INTO schema_migrations_service (version, name, applied_us) "
                       "VALUES (99, 'future', 0)")
        with pytest.raises(StorageError, match="newer than this vitalcore understands"):
            ServiceDesk(store.db)
    finally:
        store.close()
