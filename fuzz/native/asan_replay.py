"""Replay fuzz inputs through AddressSanitizer builds of the Cython codecs.

The fuzz campaigns run the codecs without a memory checker (no clang on the CI machine
for ``-fsanitize=address,fuzzer``), so an out-of-bounds read that changes no result
goes unseen there. This replays every input the campaigns kept (the checked-in corpus
and the working corpora, which hold one input per coverage feature found) through gcc
ASan builds of ``framecodec`` and ``mqttcodec``, with the crash, the fast and the twin
(differential) checks. An ASan report aborts the run with its stack.

Usage, from the repository root::

    python fuzz/native/build.py --asan              # fuzz/work/asan/*.so, once
    python fuzz/native/asan_replay.py [frames] [mqtt] [--fast-only]   # --fast-only: no twin

The script re-executes itself with ``LD_PRELOAD`` of gcc's ``libasan.so`` (an
uninstrumented interpreter must load the ASan runtime first) and
``ASAN_OPTIONS=detect_leaks=0`` (CPython frees little at exit).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUZZ = HERE.parent
ROOT = FUZZ.parent
ASAN = FUZZ / "work" / "asan"
EXT = {"frames": "framecodec", "mqtt": "mqttcodec"}
#: per target: the crash and fast checks (the codec alone), then the twin check
CHECKS = {"frames": ("frame_crash", "frame_fast", "frame_invariants"),
          "mqtt": ("mqtt_crash", "mqtt_fast", "mqtt_invariants")}


def _reexec() -> None:
    lib = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                         text=True, check=True).stdout.strip()
    env = dict(os.environ, LD_PRELOAD=lib, VC_ASAN_REPLAY="1",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86")
    env["PYTHONPATH"] = os.pathsep.join([str(FUZZ), env.get("PYTHONPATH", ""), str(ROOT / "src")])
    sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)


def main() -> int:
    import ctypes

    assert hasattr(ctypes.CDLL(None), "__asan_init"), "the ASan runtime is not loaded"
    targets = [a for a in sys.argv[1:] if a in EXT] or list(EXT)
    fast_only = "--fast-only" in sys.argv
    import vitalcore._ext as ext

    for t in targets:
        if not any(ASAN.glob(f"{EXT[t]}.*.so")):
            raise SystemExit(f"build it first: python fuzz/native/build.py --asan {EXT[t]}")
    ext.__path__.insert(0, str(ASAN))
    import importlib

    for t in targets:
        mod = importlib.import_module(f"vitalcore._ext.{EXT[t]}")
        assert Path(mod.__file__).parent == ASAN, mod.__file__  # the ASan build, not src/
        checks = [importlib.import_module(m).check for m in CHECKS[t][: 2 if fast_only else 3]]
        dirs = [FUZZ / "corpus" / t, FUZZ / "work" / t, FUZZ / "work" / f"{t}-fast",
                FUZZ / "work" / f"{t}-crash", ROOT / "tests" / "fuzz" / "regressions" / t]
        files = [f for d in dirs if d.is_dir() for f in sorted(d.iterdir()) if f.is_file()]
        t0 = time.monotonic()
        done = 0
        for f in files:
            try:
                data = f.read_bytes()
            except FileNotFoundError:  # a running campaign replaced it by a smaller one
                continue
            for check in checks:
                check(data)
            done += 1
        print(f"{t}: {done} inputs x {len(checks)} checks under ASan "
              f"({EXT[t]} from {ASAN.relative_to(ROOT)}), no error, "
              f"{time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    if os.environ.get("VC_ASAN_REPLAY") != "1":
        _reexec()
    sys.exit(main())
