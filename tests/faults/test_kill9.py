"""kill -9 of ``python -m vitalcore serve`` under MQTT QoS 1/2 and CoAP load, restarted on
the same data dir: every acknowledged frame is stored exactly once."""

from __future__ import annotations

from faults_harness import report
from faults_scenarios import run_kill9


def test_kill9_cycles_lose_no_acknowledged_frame(tmp_path, run):
    result = run(run_kill9(tmp_path, cycles=5, seed=20261127))
    text = report("kill -9 under load", result)
    v = result.verdict
    assert v.ok, f"lost {v.lost[:5]}, duplicated {v.duplicated[:5]}, unknown {v.unknown}\n{text}"
    assert result.figures["drained"], text
    assert result.figures["exit_status"] == 0, text
    # the load really ran across the kills: acks before every kill kept growing, and the
    # devices reconnected after each one
    before = result.figures["acked_before_each_kill"]
    assert before[0] > 0 and all(b > a for a, b in zip(before, before[1:], strict=False)), text
    assert result.figures["reconnects"] >= 5 * 8, text
    assert v.acked > 1000, text


def test_kill9_inside_parquet_flushes_loses_nothing(tmp_path, run):
    """The same with a store flushing every 0.2 s and each kill timed to land while a
    flush's temporary file exists (Parquet, journal or checkpoint being written)."""
    result = run(run_kill9(tmp_path, cycles=4, seed=7, flush_interval_s=0.2,
                           kill_in_flush=True))
    text = report("kill -9 inside flushes", result)
    v = result.verdict
    assert v.ok, f"lost {v.lost[:5]}, duplicated {v.duplicated[:5]}, unknown {v.unknown}\n{text}"
    assert result.figures["kills_during_a_flush"] >= 3, text
    assert result.figures["restarts_that_replayed_wal"] == 4, text
    assert result.figures["parquet_files"] > 0 and result.figures["drained"], text
