#!/usr/bin/env python3
"""atheris harness: the MQTT 3.1.1/5 packet parser and encoders (Cython) against their pure-Python twin.

Run: ``PYTHONPATH=src:fuzz python fuzz/fuzz_mqtt.py [libFuzzer options] [corpus dirs]``
(or ``python fuzz/run.py mqtt``). The invariants are in ``fuzz/mqtt_invariants.py``.
With ``--fast`` (or ``VC_FUZZ_FAST=1``) the Cython codec runs alone, without the twin,
checked by the cheap invariants of ``fuzz/mqtt_fast.py`` (millions of executions).
With ``--crash`` (or ``VC_FUZZ_CRASH=1``) the Cython codec runs alone and only a crash or
an exception the API does not document fails (``fuzz/mqtt_crash.py``): the cheapest mode.
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
    import mqtt_invariants

    return mqtt_invariants.check


def _load_fast():
    import mqtt_fast

    return mqtt_fast.check


def _load_crash():
    import mqtt_crash

    return mqtt_crash.check


if __name__ == "__main__":
    main(_load, native=("mqttcodec",), modes={"fast": _load_fast, "crash": _load_crash})
