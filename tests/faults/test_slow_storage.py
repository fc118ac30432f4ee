"""Storage slower than ingest: back-pressure reaches the devices, memory stays flat."""

from __future__ import annotations

from faults_harness import report
from faults_scenarios import run_slow_storage


def test_slow_wal_pushes_back_with_flat_memory(tmp_path, run):
    result = run(run_slow_storage(tmp_path, seconds=10.0, bytes_per_s=5_000))
    text = report("slow storage", result)
    f = result.figures
    assert result.verdict.ok, text
    assert f["skipped_messages"] > 0, text  # the devices' windows filled up
    assert f["frames_acked_per_s"] < f["frames_offered_per_s"] / 2, text
    assert f["wal_bytes_per_s"] <= 5_000 * 1.5, text  # the hook really throttled the WAL
    assert f["rss_growth_after_warmup"] < 0.10, text
    assert f["drained"] and f["exit_status"] == 0, text
