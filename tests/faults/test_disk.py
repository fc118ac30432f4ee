"""Disk full and read-only disk under the server: no acknowledgement of what is not
durable, a clear error, and recovery once the disk is usable again."""

from __future__ import annotations

import pytest
from faults_harness import report
from faults_scenarios import run_disk_full, run_disk_readonly


def test_disk_full_stops_acks_and_recovers_in_place(tmp_path, run):
    result = run(run_disk_full(tmp_path))
    if isinstance(result, str):
        pytest.skip(result)
    text = report("disk full", result)
    f = result.figures
    assert result.verdict.ok, text
    assert f["server_alive_during_fault"] and f["acked_while_faulty"] == 0, text
    assert f["log_names_cause"], text  # the log says ENOSPC
    assert f["acks_resumed_after_s"] is not None, text  # no restart needed
    assert f["wal_reopens"] >= 1 and f["drained"] and f["exit_status"] == 0, text
    # the alarm engine raised storage.failed; it latches (after recovery it may show
    # "latched", but only a user's acknowledgement ends it)
    kinds = f["storage_alarms"]
    assert kinds[:1] == ["raised"] and "ended" not in kinds, text


def test_read_only_disk_stops_acks_refuses_start_and_recovers(tmp_path, run):
    result = run(run_disk_readonly(tmp_path))
    if isinstance(result, str):
        pytest.skip(result)
    text = report("read-only disk", result)
    f = result.figures
    assert result.verdict.ok, text
    assert f["server_alive_during_fault"] and f["acked_while_faulty"] == 0, text
    assert f["log_names_cause"], text  # EROFS named
    assert f["exit_status_on_readonly"] != 0, text  # a shutdown that could not flush says so
    assert f["refused_start_on_readonly"], text
    assert f["acks_resumed_after_s"] is not None and f["drained"], text
