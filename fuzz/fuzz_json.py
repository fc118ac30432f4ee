#!/usr/bin/env python3
"""atheris harness: the JSON frame decoder (msgspec schema, then the binary codec).

Run: ``PYTHONPATH=src:fuzz python fuzz/fuzz_json.py [libFuzzer options] [corpus dirs]``
(or ``python fuzz/run.py json``). The invariants are in ``fuzz/json_invariants.py``.
"""

from __future__ import annotations

import os
import sys

# the harness helpers first; the source tree last, only a fallback to an installed vitalcore
# (an installed one has its extensions built; src/ has them only after an in-place build)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from fuzzlib import main  # noqa: E402


def _load():
    import json_invariants

    return json_invariants.check


if __name__ == "__main__":
    main(_load, native=("framecodec",))
