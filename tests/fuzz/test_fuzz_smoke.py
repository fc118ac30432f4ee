"""The fuzz harnesses run in CI: the checked-in corpus plus a bounded random run each.

Each harness (``fuzz/fuzz_<target>.py``) runs in a subprocess under libFuzzer with a
fixed seed, ``-runs`` and ``-max_total_time`` bounds and a subprocess timeout, so a
hang cannot stall CI. The checked-in corpus ``fuzz/corpus/<target>/`` is replayed
first (libFuzzer's INITED line), then the fuzzer mutates for the rest of the budget.
Long campaigns: ``python fuzz/run.py`` (docs/fuzzing.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401 - a test dependency: if it is missing, fail here, loudly
import pytest

import vitalcore

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
#: (executions, seconds) per target: about 25 s in total on the 2-core CI machine
BUDGET = {"frames": (3000, 9), "mqtt": (20000, 6), "json": (15000, 6)}
#: the modes that run the Cython codec alone (fuzz/<target>_fast.py and _crash.py checks):
#: a few seconds each
ALONE_BUDGET = {("frames", "fast"): (2000, 2), ("mqtt", "fast"): (5000, 2),
                ("frames", "crash"): (4000, 2), ("mqtt", "crash"): (8000, 2)}
#: what the checked-in corpus must reach at start (libFuzzer's INITED cov): the fast and
#: crash modes instrument only their check module in Python (CI builds no native copies)
MIN_COV = {"twin": 50, "fast": 20, "crash": 10}


@pytest.mark.parametrize("target, mode", [*((t, "twin") for t in sorted(BUDGET)),
                                          *sorted(ALONE_BUDGET)])
def test_harness_runs_corpus_and_bounded_fuzzing_without_a_crash(target, mode, tmp_path):
    runs, seconds = BUDGET[target] if mode == "twin" else ALONE_BUDGET[target, mode]
    corpus = FUZZ / "corpus" / target
    assert len(list(corpus.iterdir())) >= 5, "the checked-in seed corpus is missing"
    # the vitalcore this test imports (installed in CI, src/ with PYTHONPATH=src)
    pkg_root = str(Path(vitalcore.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg_root, str(FUZZ)]))
    for switch in ("VC_FUZZ_NATIVE", "VC_FUZZ_FAST", "VC_FUZZ_CRASH", "VC_FUZZ_PYCOV"):  # ours
        env.pop(switch, None)
    cmd = [sys.executable, str(FUZZ / f"fuzz_{target}.py"), *([f"--{mode}"] if mode != "twin"
                                                              else []),
           str(tmp_path / "work"), str(corpus),
           f"-runs={runs}", f"-max_total_time={seconds}", "-seed=1", "-max_len=4096",
           "-timeout=10", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"]
    (tmp_path / "work").mkdir()
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=seconds + 60)
    log = proc.stderr + proc.stdout
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-",
                                                                        "oom-"))]
    assert proc.returncode == 0 and not crashes, f"{crashes}\n{log[-4000:]}"
    inited = re.search(r"#\d+\s+INITED cov: (\d+)", log)
    executed = re.search(r"stat::number_of_executed_units:\s+(\d+)", log)
    # the corpus reached real code (of the check module alone in the fast and crash modes)
    assert inited and int(inited.group(1)) > MIN_COV[mode], log[-2000:]
    assert executed and int(executed.group(1)) > len(list(corpus.iterdir())), log[-2000:]
