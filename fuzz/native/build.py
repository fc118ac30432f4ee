"""Build coverage-instrumented copies of the Cython codecs for the fuzz harnesses.

No clang on the CI machine, so no ``-fsanitize=fuzzer-no-link``: gcc's
``-fsanitize-coverage=trace-pc,trace-cmp`` plus ``covshim.c`` (see there) give
libFuzzer block coverage and compare feedback of the C code, vc_wire.h included. The
result goes to ``fuzz/work/native/`` (git-ignored) and is loaded instead of the normal
build only by ``fuzz/native/loader.py``; the package's own extensions are untouched.

Usage: ``python fuzz/native/build.py [framecodec] [mqttcodec]`` (default: both).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXT = ROOT / "src" / "vitalcore" / "_ext"
OUT = ROOT / "fuzz" / "work" / "native"


def build(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    c_file = OUT / f"{name}.c"
    subprocess.run([sys.executable, "-m", "cython", "-3", str(EXT / f"{name}.pyx"), "-o",
                    str(c_file)], check=True, cwd=ROOT)
    so = OUT / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    shim = OUT / "covshim.o"
    subprocess.run(["gcc", "-c", "-O2", "-fPIC", str(HERE / "covshim.c"), "-o", str(shim)],
                   check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fno-strict-overflow",
                    "-fsanitize-coverage=trace-pc,trace-cmp", f"-I{include}", f"-I{EXT}",
                    str(c_file), str(shim), "-o", str(so)], check=True)
    return so


if __name__ == "__main__":
    for n in sys.argv[1:] or ["framecodec", "mqttcodec"]:
        print(build(n))
