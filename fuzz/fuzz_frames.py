#!/usr/bin/env python3
"""atheris harness: the wire-format v1 frame decoder (Cython) against its pure-Python twin.

Run: ``PYTHONPATH=src:fuzz python fuzz/fuzz_frames.py [libFuzzer options] [corpus dirs]``
(or ``python fuzz/run.py frames``). The invariants are in ``fuzz/frame_invariants.py``.
With ``--fast`` (or ``VC_FUZZ_FAST=1``) the Cython codec runs alone, without the twin,
checked by the cheap invariants of ``fuzz/frame_fast.py`` (millions of executions).
With ``--crash`` (or ``VC_FUZZ_CRASH=1``) the Cython codec runs alone and only a crash or
an exception the API does not document fails (``fuzz/frame_crash.py``): the cheapest mode.
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
    import frame_invariants

    return frame_invariants.check


def _load_fast():
    import frame_fast

    return frame_fast.check


def _load_crash():
    import frame_crash

    return frame_crash.check


if __name__ == "__main__":
    main(_load, native=("framecodec",), modes={"fast": _load_fast, "crash": _load_crash})
