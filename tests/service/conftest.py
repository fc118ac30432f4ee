"""Fixtures of the service-desk tests: every desk test runs on SQLite and on PostgreSQL.

The PostgreSQL cluster and the ``backend`` fixture are the clinical tests' own
(tests/clinical/conftest.py), loaded here under another module name so both test
directories share one implementation.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_CLINICAL = Path(__file__).resolve().parent.parent / "clinical"
if str(_CLINICAL) not in sys.path:
    sys.path.insert(0, str(_CLINICAL))
_spec = importlib.util.spec_from_file_location("clinical_fixtures", _CLINICAL / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

pg_server = _fixtures.pg_server
backend = _fixtures.backend

from service_world import World, build_world  # noqa: E402


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
