"""Two nodes on one database: racing changes cannot both win, and nothing half-done stays.

Each node is its own :class:`ClinicalStore` (own connection) on the same SQLite file or
PostgreSQL schema; threads start their operations together at a barrier.
"""

from __future__ import annotations

import threading

import pytest
from clinical_world import DEVICES, LOG2_N, MIN, T0, build_world

from vitalcore.clinical import open_store
from vitalcore.errors import UsageError

D1 = DEVICES[0]
ROUNDS = 8


def _race(*calls):
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(i, call):
        barrier.wait(5)
        try:
            call()
            outcomes[i] = "ok"
        except UsageError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


@pytest.fixture
def two_nodes(backend):
    target = backend()
    a = open_store(target, log2_n=LOG2_N)
    build_world(a)
    b = open_store(target, log2_n=LOG2_N)
    yield a, b
    a.close()
    b.close()


def test_one_device_cannot_be_bound_by_two_nodes(two_nodes):
    a, b = two_nodes
    t = T0 + MIN
    for i in range(ROUNDS):
        out = _race(lambda i=i, t=t: a.admit("nurse1", f"A{i}", "W1", devices=[D1], at_us=t),
                    lambda i=i, t=t: b.admit("nurse2", f"B{i}", "W2", devices=[D1], at_us=t))
        assert [o == "ok" for o in out].count(True) == 1, out
        winner = f"A{i}" if out[0] == "ok" else f"B{i}"
        loser = f"B{i}" if out[0] == "ok" else f"A{i}"
        assert a.patient_of(D1, t) == winner == b.patient_of(D1, t)
        with pytest.raises(UsageError):  # the loser left no record behind
            a.placements(loser)
        t += MIN
        a.discharge("bedmgr", winner, at_us=t)
        b.record_cleaning("biomed", D1, at_us=t)
        a.record_function_check("biomed", D1, True, "REF-1", at_us=t)


def test_one_new_patient_admitted_by_two_nodes_once(two_nodes):
    a, b = two_nodes
    out = _race(lambda: a.admit("nurse1", "P1", "W1", at_us=T0 + MIN),
                lambda: b.admit("nurse2", "P1", "W2", at_us=T0 + MIN))
    assert [o == "ok" for o in out].count(True) == 1, out
    assert len(b.placements("P1")) == 1
