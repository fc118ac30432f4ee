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


def main(load: Callable[[], Callable[[bytes], None]], native: tuple[str, ...] = ()) -> None:
    """Run a harness under atheris.

    ``load`` imports the code under test and returns the per-input check; it is called
    inside :func:`atheris.instrument_imports` so that the pure-Python twins and the
    checks themselves are coverage-instrumented. With ``VC_FUZZ_NATIVE=1`` in the
    environment, the Cython extensions named in ``native`` are imported from the
    gcc-instrumented build of ``fuzz/native/build.py`` so that their C code feeds
    coverage too; that import has to wait for the first input (atheris loads libFuzzer
    only when fuzzing starts), so ``load`` runs then.
    """
    import atheris

    if native and os.environ.get("VC_FUZZ_NATIVE") == "1":
        state: dict[str, Callable[[bytes], None]] = {}

        def first_then_check(data: bytes) -> None:
            check = state.get("check")
            if check is None:
                from native.loader import use_instrumented

                use_instrumented(*native)
                with atheris.instrument_imports(include=INSTRUMENTED):
                    check = state["check"] = load()
            check(data)

        atheris.Setup(sys.argv, first_then_check)
    else:
        with atheris.instrument_imports(include=INSTRUMENTED):
            check = load()
        atheris.Setup(sys.argv, check)
    atheris.Fuzz()
