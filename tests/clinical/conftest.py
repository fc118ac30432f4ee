"""Fixtures of the clinical tests: every store test runs on SQLite and on a real PostgreSQL
(the ``backend`` and ``pg_server`` fixtures of tests/conftest.py)."""

from __future__ import annotations

import pytest
from clinical_world import LOG2_N

from vitalcore.clinical import open_store


@pytest.fixture
def store(backend):
    """A fresh, migrated, empty :class:`ClinicalStore` (SQLite or PostgreSQL)."""
    s = open_store(backend(), log2_n=LOG2_N)
    yield s
    s.close()
