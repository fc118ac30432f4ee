"""Shared pieces of the fuzz harnesses: the control prefix, chunking, the atheris driver.

Every harness input starts with a two-byte *control prefix* that the fuzzer mutates
like the rest of the input: byte 0 holds harness flags (their meaning is per
target), byte 1 seeds how the remaining bytes are cut into chunks, so the same data
is also fed in random fragments. Inputs shorter than the prefix are padded with 0.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable
from itertools import pairwise

PREFIX = 2
MAX_CUTS = 6


def control(data: bytes) -> tuple[int, int, bytes]:
    """Split an input into (flags, chunk seed, payload bytes)."""
    head = data[:PREFIX].ljust(PREFIX, b"\0")
    return head[0], head[1], data[PREFIX:]


def chunks(payload: bytes, seed: int) -> list[bytes]:
    """``payload`` cut at up to :data:`MAX_CUTS` places chosen by ``seed`` (0: one chunk).

    Empty chunks are kept on purpose: feeding ``b""`` must be harmless.
    """
    if seed == 0:
        return [payload]
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(len(payload) + 1) for _ in range(seed % (MAX_CUTS + 1)))
    bounds = [0, *cuts, len(payload)]
    return [payload[a:b] for a, b in pairwise(bounds)]


INSTRUMENTED = ["vitalcore", "frame_invariants", "mqtt_invariants", "json_invariants"]
#: Fast and crash modes: only the check modules' own branches (the code under test is C).
INSTRUMENTED_ALONE = ["frame_fast", "mqtt_fast", "frame_crash", "mqtt_crash"]
#: Harness modes besides the default twin mode: command-line switch -> environment variable.
MODES = {"fast": "VC_FUZZ_FAST", "crash": "VC_FUZZ_CRASH"}

Loader = Callable[[], Callable[[bytes], None]]


def harness_mode() -> str:
    """``"twin"`` (default), ``"fast"`` or ``"crash"``.

    ``--fast``/``--crash`` on the command line (removed before libFuzzer sees them) or
    ``VC_FUZZ_FAST=1``/``VC_FUZZ_CRASH=1`` in the environment; both at once is an error.
    """
    for mode, var in MODES.items():
        if f"--{mode}" in sys.argv:
            sys.argv.remove(f"--{mode}")
            os.environ[var] = "1"
    on = [mode for mode, var in MODES.items() if os.environ.get(var) == "1"]
    if len(on) > 1:
        raise SystemExit(f"pick one harness mode, not {' and '.join(on)}")
    return on[0] if on else "twin"


def main(load: Loader, native: tuple[str, ...] = (), modes: dict[str, Loader] | None = None
         ) -> None:
    """Run a harness under atheris.

    ``load`` imports the code under test and returns the per-input check; it is called
    inside :func:`atheris.instrument_imports` so that the pure-Python twins and the
    checks themselves are coverage-instrumented. With ``VC_FUZZ_NATIVE=1`` in the
    environment, the Cython extensions named in ``native`` are imported from the
    gcc-instrumented build of ``fuzz/native/build.py`` so that their C code feeds
    coverage too; that import has to wait for the first input (atheris loads libFuzzer
    only when fuzzing starts), so ``load`` runs then. ``modes`` maps the other harness
    modes of the target (:func:`harness_mode`: ``"fast"``, ``"crash"``) to their
    loaders, which replace ``load``: the Cython codec alone with cheap invariants (fast)
    or none but its documented exceptions (crash), no reference twin; in Python only the
    check module is coverage-instrumented, and with native coverage nothing
    (``VC_FUZZ_PYCOV=1`` instruments it anyway, ``0`` never: a blind run, to measure
    what instrumentation costs).
    """
    import atheris

    include = INSTRUMENTED
    mode = harness_mode()
    if mode != "twin":
        if mode not in (modes or {}):
            raise SystemExit(f"this target has no {mode} mode")
        load = modes[mode]
        # with native coverage the C code guides; Python hooks on every compare of the
        # checks would only slow it down (VC_FUZZ_PYCOV=1 keeps them, to compare)
        native_on = native and os.environ.get("VC_FUZZ_NATIVE") == "1"
        pycov = os.environ.get("VC_FUZZ_PYCOV", "0" if native_on else "1") == "1"
        include = INSTRUMENTED_ALONE if pycov else []

    def instrumented(loader: Loader) -> Callable[[bytes], None]:
        if not include:  # atheris would read an empty list as "instrument everything"
            return loader()
        with atheris.instrument_imports(include=include):
            return loader()

    if native and os.environ.get("VC_FUZZ_NATIVE") == "1":
        state: dict[str, Callable[[bytes], None]] = {}
        # the first callback loads the code under test; import the heavy modules that do
        # not touch the extensions now, or that first input can outlast -timeout on a
        # loaded machine (it did: a 12 s "timeout" of the empty input at load average 8)
        import numpy  # noqa: F401

        import vitalcore.batch  # noqa: F401 - numba
        import vitalcore.mqtt.packets  # noqa: F401 - msgspec
        import vitalcore.protocol  # noqa: F401

        def first_then_check(data: bytes) -> None:
            check = state.get("check")
            if check is None:
                from native.loader import use_instrumented

                use_instrumented(*native)
                check = state["check"] = instrumented(load)
            check(data)

        atheris.Setup(sys.argv, first_then_check)
    else:
        check = instrumented(load)
        atheris.Setup(sys.argv, check)
    atheris.Fuzz()
