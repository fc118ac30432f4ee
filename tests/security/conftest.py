"""The security tests reuse the clinical tests' world (tests/clinical/clinical_world.py)."""

from __future__ import annotations

import sys
from pathlib import Path

CLINICAL = Path(__file__).resolve().parent.parent / "clinical"
if str(CLINICAL) not in sys.path:
    sys.path.insert(0, str(CLINICAL))
