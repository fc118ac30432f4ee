"""Fixtures of the service-desk tests: every desk test runs on SQLite and on PostgreSQL.

The PostgreSQL cluster and the ``backend`` fixture are tests/conftest.py's.
"""

from __future__ import annotations

import pytest
from service_world import World, build_world


@pytest.fixture
def world(backend):
    """A clinical store with staff and devices, a service desk on a FakeClock."""
    w = build_world(backend())
    yield w
    w.close()


@pytest.fixture
def sqlite_world(tmp_path):
    """The same world on SQLite only (hypothesis and the quick checks)."""
    w = build_world(str(tmp_path / "svc.sqlite"))
    yield w
    w.close()


__all__ = ["World"]
