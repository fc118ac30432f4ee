"""Fixtures of the alarm tests."""

from __future__ import annotations

import pytest
from alarm_helpers import Rig


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()

