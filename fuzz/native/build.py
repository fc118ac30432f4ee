"""Build coverage-instrumented copies of the Cython codecs for the fuzz harnesses.

No clang on the CI machine, so no ``-fsanitize=fuzzer-no-link``: gcc's
``-fsanitize-coverage=trace-pc,trace-cmp`` plus ``covshim.c`` (see there) give
libFuzzer block coverage and compare feedback of the C code, vc_wire.h included. The
result goes to ``fuzz/work/native/`` (git-ignored) and is loaded instead of the normal
build only by ``fuzz/native/loader.py``; the package's own extensions are untouched.

Usage: ``python fuzz/native/build.py [--asan] [framecodec] [mqttcodec]`` (default: both;
``--asan``: AddressSanitizer builds into ``fuzz/work/asan/`` instead, see
``fuzz/native/asan_replay.py``).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXT = ROOT / "src" / "vitalcore" / "_ext"
OUT = ROOT / "fuzz" / "work" / "native"


def _cython() -> list[str]:
    """This interpreter's Cython, else the one on PATH (the venv may lack it)."""
    if importlib.util.find_spec("Cython") is not None:
        return [sys.executable, "-m", "cython"]
    exe = shutil.which("cython")
    if exe is None:
        raise SystemExit("Cython is needed to build the instrumented codecs")
    return [exe]


def _cythonize(name: str, out: Path) -> tuple[Path, Path, str]:
    """Translate ``name``.pyx into ``out``; the C file, the module's path and the
    Python include directory."""
    out.mkdir(parents=True, exist_ok=True)
    c_file = out / f"{name}.c"
    subprocess.run([*_cython(), "-3", str(EXT / f"{name}.pyx"), "-o", str(c_file)], check=True,
                   cwd=ROOT)
    so = out / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    return c_file, so, sysconfig.get_paths()["include"]


def build(name: str) -> Path:
    c_file, so, include = _cythonize(name, OUT)
    shim = OUT / "covshim.o"
    subprocess.run(["gcc", "-c", "-O2", "-fPIC", str(HERE / "covshim.c"), "-o", str(shim)],
                   check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-fno-strict-overflow",
                    "-fsanitize-coverage=trace-pc,trace-cmp", f"-I{include}", f"-I{EXT}",
                    str(c_file), str(shim), "-o", str(so)], check=True)
    return so


ASAN_OUT = ROOT / "fuzz" / "work" / "asan"


def build_asan(name: str) -> Path:
    """An AddressSanitizer build of ``name`` (no coverage) for ``fuzz/native/asan_replay.py``.

    gcc's ASan runtime must be preloaded into the (uninstrumented) interpreter that
    imports it: ``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``.
    """
    c_file, so, include = _cythonize(name, ASAN_OUT)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
                    "-fno-strict-overflow", "-fsanitize=address", f"-I{include}", f"-I{EXT}",
                    str(c_file), "-o", str(so)], check=True)
    return so


if __name__ == "__main__":
    asan = "--asan" in sys.argv
    for n in [a for a in sys.argv[1:] if a != "--asan"] or ["framecodec", "mqttcodec"]:
        print(build_asan(n) if asan else build(n))
