"""Load the coverage-instrumented codecs of ``fuzz/native/build.py`` in a fuzz run.

Call :func:`use_instrumented` from inside the first fuzz callback: atheris loads its
libFuzzer core only when fuzzing starts. The core is promoted to ``RTLD_GLOBAL`` (so
the extension's ``__sanitizer_cov_*`` references resolve) and the instrumented build
directory is put first on ``vitalcore._ext.__path__``, so ``vitalcore.codec`` and
``vitalcore.mqtt`` import the instrumented copies.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

NATIVE = Path(__file__).resolve().parents[1] / "work" / "native"


def _libfuzzer_core() -> str:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "atheris" in path and "core_with_libfuzzer" in path:
                return path
    raise RuntimeError("atheris's libFuzzer core is not loaded: call this inside a fuzz run")


def use_instrumented(*names: str) -> None:
    """Import ``vitalcore._ext.<name>`` from the instrumented build, for each name."""
    ctypes.CDLL(_libfuzzer_core(), mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD | os.RTLD_NOW)
    import vitalcore._ext as ext

    for name in names:
        if f"vitalcore._ext.{name}" in sys.modules:
            raise RuntimeError(f"vitalcore._ext.{name} was imported before the switch")
        if not any(NATIVE.glob(f"{name}.*.so")):
            raise RuntimeError(f"build it first: python fuzz/native/build.py {name}")
    ext.__path__.insert(0, str(NATIVE))
