"""Run the fault-injection scenarios with bigger counts than CI and print a table.

The scenarios live in ``tests/faults/faults_scenarios.py`` (the CI tests run them small);
each runs a real ``python -m vitalcore serve`` subprocess (``kill9-flush``: the same
pieces in ``tests/faults/serve_child.py`` with a store flushing every 0.2 s; the clock
scenario: a server in this process, so that its wall clock can be changed) against real gmqtt/aiocoap clients,
then reads the data dir back through ``Store`` and counts, per (device, stream, seq), the
acknowledged frames lost and the frames stored twice. Disk scenarios need root (tmpfs,
loop-mounted ext4) and are reported as skipped otherwise.

Usage::

    PYTHONPATH=src python scripts/faults.py [--kill-cycles 20] [--storm-devices 2000]
        [--only kill9,kill9-flush,disk-full,disk-readonly,slow-storage,storm,clock]
        [--keep DIR]

Exit status 0 if every scenario that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "faults"))

import faults_scenarios as sc  # noqa: E402
from faults_harness import TABLE_HEADER  # noqa: E402

SCENARIOS = ("kill9", "kill9-flush", "disk-full", "disk-readonly", "slow-storage", "storm",
             "clock")


def _runs(args: argparse.Namespace) -> dict:
    return {
        "kill9": ("kill -9 under load", lambda d: sc.run_kill9(d, args.kill_cycles,
                                                                seed=args.seed)),
        "kill9-flush": ("kill -9 inside flushes", lambda d: sc.run_kill9(
            d, args.kill_cycles, seed=args.seed + 1, flush_interval_s=0.2, kill_in_flush=True)),
        "disk-full": ("disk full (tmpfs)", lambda d: sc.run_disk_full(d)),
        "disk-readonly": ("read-only disk (ext4)", lambda d: sc.run_disk_readonly(d)),
        "slow-storage": ("slow storage (5 kB/s WAL)",
                         lambda d: sc.run_slow_storage(d, seconds=30.0, bytes_per_s=5_000)),
        "storm": (f"reconnect storm ({args.storm_devices})",
                  lambda d: sc.run_reconnect_storm(d, n_devices=args.storm_devices)),
        "clock": ("clock jumps", lambda d: sc.run_clock_jumps(d, seconds=20.0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kill-cycles", type=int, default=20)
    ap.add_argument("--storm-devices", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    ap.add_argument("--keep", metavar="DIR", help="keep the data dirs and logs under DIR")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    runs = _runs(args)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vitalcore-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    rows, details, failed = [], [], False
    try:
        for key in chosen:
            name, factory = runs[key]
            root = base / key
            root.mkdir(exist_ok=True)
            t0 = time.monotonic()
            print(f"running {name} ...", flush=True)
            result = asyncio.run(factory(root))
            if isinstance(result, str):
                rows.append(f"{name:<28} skipped: {result}")
                continue
            ok = result.verdict.ok
            failed |= not ok
            rows.append(result.verdict.row(name, result.runs))
            details.append(f"{name} ({time.monotonic() - t0:.0f} s): {result.figures}")
            if not ok:
                details.append(f"  lost {result.verdict.lost[:10]} duplicated "
                               f"{result.verdict.duplicated[:10]} unknown {result.verdict.unknown}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(TABLE_HEADER)
    print("\n".join(rows))
    print()
    print("\n".join(details))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
