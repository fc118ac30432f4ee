"""Fixtures of the alarm tests."""

from __future__ import annotations

import pytest
from alarm_helpers import Rig

from vitalcore.alarms import AlarmConfig


@pytest.fixture(params=[True, False], ids=["batched", "per_device"])
def rig(tmp_path, request):
    """A rig whose engine analyses ECG with the batched pass or the per-device twin."""
    r = Rig(tmp_path, config=AlarmConfig(batched=request.param))
    yield r
    r.close()

