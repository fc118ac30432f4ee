"""Run fuzz campaigns (or rebuild the seed corpus) and print what they did.

Examples (from the repository root)::

    python fuzz/run.py frames --time 3600            # one hour on the frame decoder
    python fuzz/run.py all --time 600 --nice          # 10 min per target, lowest priority
    python fuzz/run.py mqtt --runs 10000000           # stop after 10 M executions
    python fuzz/run.py frames --native --time 1800    # C code of the codec instrumented too
    python fuzz/run.py frames --fast --native --runs 10000000 --time 36000 --nice
    python fuzz/run.py frames --crash --native --runs 8000000 --time 1500 --nice
    python fuzz/run.py --reseed                       # seeds + finds -> fuzz/corpus/

``--fast`` runs the Cython codec alone with cheap invariants (``fuzz/<target>_fast.py``
checks, no pure-Python twin): tens of times more executions per second, for
million-execution campaigns. ``--crash`` runs it alone with no invariant but its
documented exceptions and two counters (``fuzz/<target>_crash.py``): the standard
libFuzzer harness, the cheapest per execution. Their working corpora are
``fuzz/work/<target>-fast/`` and ``fuzz/work/<target>-crash/``, seeded from the
checked-in corpus and the other modes' working corpora.

Each campaign runs ``fuzz/fuzz_<target>.py`` under libFuzzer (atheris) with the
checked-in corpus ``fuzz/corpus/<target>/`` read-only and a working corpus in
``fuzz/work/<target>/`` (git-ignored, delete it freely), always bounded by
``-max_total_time``. It prints executions,
executions per second, coverage (libFuzzer's ``cov``/``ft``), corpus size and the crash
files written to ``fuzz/artifacts/<target>/``. A crash means an invariant of
``fuzz/<target>_invariants.py`` (or of the mode's check module) broke, an exception
escaped or the process died: turn the file into a test in
``tests/fuzz/test_regressions.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = ("frames", "mqtt", "json")
MAX_LEN = {"frames": 8192, "mqtt": 4096, "json": 4096}
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+(?:cov: (\d+) )?ft: (\d+) corp: (\d+)/(\S+)")
NATIVE_EXT = {"frames": "framecodec", "mqtt": "mqttcodec", "json": "framecodec"}
#: seconds one input may take: generous, the campaigns run at nice 19 on a shared machine
#: (an input takes milliseconds; a real hang still shows)
TIMEOUT = 60
#: targets with a fast and a crash mode (fuzz/frame_{fast,crash}.py, fuzz/mqtt_{fast,crash}.py)
ALONE = ("frames", "mqtt")
MODES = ("twin", "fast", "crash")  # fuzz/fuzzlib.py: harness_mode


def env(native: bool = False, mode: str = "twin") -> dict[str, str]:
    e = dict(os.environ)
    for m in MODES[1:]:  # the mode is the caller's, whatever the environment says
        e.pop(f"VC_FUZZ_{m.upper()}", None)
    if native:
        e["VC_FUZZ_NATIVE"] = "1"
    if mode != "twin":
        e[f"VC_FUZZ_{mode.upper()}"] = "1"
    e["PYTHONPATH"] = os.pathsep.join([str(HERE), e.get("PYTHONPATH", ""), str(ROOT / "src")])
    return e


def command(target: str, args: list[str], nice: bool) -> list[str]:
    cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), *args]
    return ["nice", "-n", "19", *cmd] if nice else cmd


def _native_stale(name: str) -> bool:
    """No instrumented build of ``name``, or one older than its sources."""
    built = list((HERE / "work" / "native").glob(f"{name}.*.so"))
    if not built:
        return True
    ext = ROOT / "src" / "vitalcore" / "_ext"
    newest = max(p.stat().st_mtime for p in (ext / f"{name}.pyx", ext / f"{name}.pxd",
                                             ext / "vc_wire.h", HERE / "native" / "covshim.c")
                 if p.exists())
    return built[0].stat().st_mtime < newest


def campaign(target: str, seconds: int, runs: int, nice: bool, native: bool,
             jobs_log: Path | None, mode: str = "twin") -> dict:
    work = HERE / "work" / (target if mode == "twin" else f"{target}-{mode}")
    artifacts = HERE / "artifacts" / target
    work.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    seeds = [str(HERE / "corpus" / target)]
    if mode != "twin":  # what the other modes found
        seeds += [str(d) for d in (HERE / "work" / target,
                                   *(HERE / "work" / f"{target}-{m}" for m in MODES[1:]))
                  if d.is_dir() and d != work]
    args = [
        str(work), *seeds,
        f"-max_total_time={seconds}", f"-max_len={MAX_LEN[target]}", "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/", f"-timeout={TIMEOUT}", "-rss_limit_mb=2048",
    ]
    if runs:
        args.append(f"-runs={runs}")
    t0 = time.monotonic()
    if native and _native_stale(NATIVE_EXT[target]):
        subprocess.run([sys.executable, str(HERE / "native" / "build.py"), NATIVE_EXT[target]],
                       check=True, cwd=ROOT)
    # the log streams to a file, so a long campaign can be watched (tail -f) while it runs
    log_path = jobs_log or work.parent / f"{work.name}.log"
    with open(log_path, "w") as out:
        proc = subprocess.run(command(target, args, nice), env=env(native, mode), cwd=ROOT,
                              stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 600)
    elapsed = time.monotonic() - t0
    log = log_path.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    progress = _PROGRESS.findall(log)
    last = progress[-1] if progress else ("0", "0", "0", "0", "0b")
    crashes = sorted(str(p.relative_to(ROOT)) for p in set(artifacts.iterdir()) - before)
    return {
        "target": target,
        "executions": stats.get("number_of_executed_units", int(last[0])),
        "exec_per_s": stats.get("average_exec_per_sec", 0),
        "seconds": round(elapsed),
        "cov": int(last[1] or 0),
        "ft": int(last[2]),
        "corpus": f"{last[3]} inputs / {last[4]}",
        "exit": proc.returncode,
        "crashes": crashes,
        "log": str(log_path),
    }


def reseed() -> None:
    """Seeds, the checked-in corpus and campaign finds, minimised into fuzz/corpus/."""
    sys.path.insert(0, str(HERE))
    sys.path.append(str(ROOT / "src"))
    import seeds

    with tempfile.TemporaryDirectory() as tmp:
        print("seeds:", seeds.write(Path(tmp)))
        for target in TARGETS:
            corpus = HERE / "corpus" / target
            corpus.mkdir(parents=True, exist_ok=True)
            merged = Path(tmp) / f"merged-{target}"
            merged.mkdir()
            sources = [str(Path(tmp) / target), str(corpus)]
            if (HERE / "work" / target).is_dir():  # fold in what campaigns found
                sources.append(str(HERE / "work" / target))
            subprocess.run(command(target, ["-merge=1", str(merged), *sources,
                                            f"-max_len={MAX_LEN[target]}"], True),
                           env=env(), cwd=ROOT, capture_output=True, check=True, timeout=900)
            shutil.rmtree(corpus)
            shutil.copytree(merged, corpus)
            size = sum(p.stat().st_size for p in corpus.iterdir())
            print(f"{target}: {len(list(corpus.iterdir()))} inputs, {size} bytes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("target", nargs="?", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--time", type=int, default=600, help="seconds per target (bound)")
    ap.add_argument("--runs", type=int, default=0, help="stop after this many executions")
    ap.add_argument("--nice", action="store_true", help="run at nice 19 (shared machines)")
    ap.add_argument("--native", action="store_true",
                    help="instrumented C build of the codecs (fuzz/native/build.py)")
    alone = ap.add_mutually_exclusive_group()
    alone.add_argument("--fast", action="store_true",
                       help="the Cython codec alone, cheap invariants, no twin (frames, mqtt)")
    alone.add_argument("--crash", action="store_true",
                       help="the Cython codec alone, only crashes and undocumented exceptions "
                            "fail (frames, mqtt)")
    ap.add_argument("--log", type=Path, help="directory for the full libFuzzer logs")
    ap.add_argument("--reseed", action="store_true", help="rebuild fuzz/corpus and exit")
    a = ap.parse_args()
    if a.reseed:
        reseed()
        return 0
    failed = False
    targets = TARGETS if a.target == "all" else (a.target,)
    mode = "fast" if a.fast else "crash" if a.crash else "twin"
    if mode != "twin":
        if a.target == "json":
            ap.error(f"--{mode} exists for frames and mqtt (json has no Cython decoder of its own)")
        targets = tuple(t for t in targets if t in ALONE)
    for target in targets:
        log = None
        if a.log:
            a.log.mkdir(parents=True, exist_ok=True)
            log = a.log / f"{target}-{time.strftime('%Y%m%dT%H%M%S')}.log"
        r = campaign(target, a.time, a.runs, a.nice, a.native, log, mode)
        how = f"{mode}, " + ("native, " if a.native else "")
        print(f"{r['target']}: {r['executions']:,} executions in {r['seconds']} s "
              f"({r['exec_per_s']:,}/s), {how}"
              f"cov {r['cov'] or 'n/a'} ft {r['ft']}, corpus {r['corpus']}, "
              f"crashes: {len(r['crashes'])} {r['crashes'] or ''}; log {r['log']}; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        failed |= bool(r["crashes"]) or r["exit"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
