"""``python -m vitalcore.service``: see :mod:`vitalcore.service.cli`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
