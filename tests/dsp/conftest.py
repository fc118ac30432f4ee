from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` beside the project root; skip when it is not there."""
    if not (DATA / "mitdb").is_dir():
        pytest.skip(f"reference recordings not found at {DATA.resolve()} (shared/data)")
    return DATA
