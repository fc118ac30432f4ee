"""Fixtures of the MQTT codec tests (helpers live in ``mqtt_helpers``)."""

from __future__ import annotations

import pytest
from mqtt_helpers import CODECS


@pytest.fixture(params=sorted(CODECS))
def codec(request):
    """The codec module under test: ``ext`` (Cython) or ``ref`` (pure Python)."""
    return CODECS[request.param]
