"""Fixtures of the fleet tests: every tracker test runs on SQLite and on a real PostgreSQL.

The PostgreSQL cluster is tests/conftest.py's ``pg_server``; ``backend`` is overridden here
to use in-memory SQLite.
"""

from __future__ import annotations

import pytest

from pg_cluster import fresh_pg_target


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """A factory of fresh store locations on the backend of this parametrisation.

    SQLite runs in memory here (a file costs an fsync per transaction: seconds per
    test); tests/fleet/test_fleet_schema.py covers a file database.
    """
    if request.param == "sqlite":
        return lambda: ":memory:"
    conninfo = request.getfixturevalue("pg_server")
    return lambda: fresh_pg_target(conninfo)


@pytest.fixture
def world(backend):
    """``(clinical store, fleet tracker)`` on a fresh database with the clinical test
    organisation (devices available) and a fake clock at T0."""
    from fleet_world import make_world

    store, tracker = make_world(backend())
    yield store, tracker
    store.close()


@pytest.fixture
def sqlite_world():
    """:func:`world` on SQLite only, for tests of what does not depend on the backend
    (export formats, event delivery)."""
    from fleet_world import make_world

    store, tracker = make_world(":memory:")
    yield store, tracker
    store.close()
