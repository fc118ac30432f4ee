"""Hostile arguments: every call either works or raises our exception types, and a
refused call writes nothing but its audit record."""

from __future__ import annotations

import pytest
from clinical_world import LOG2_N, MIN, T0, build_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pg_cluster import fresh_pg_target
from vitalcore.clinical import Resource, ScopeKind, open_store
from vitalcore.errors import AccessDenied, UsageError

TABLES = ("hospitals", "campuses", "wards", "beds", "patients", "placements", "bindings",
          "devices", "device_events", "users", "role_grants")

junk_text = st.one_of(st.text(max_size=140), st.sampled_from(["W1", "P1", "H1", "root", ""]))
junk_int = st.one_of(st.integers(-2, 2 ** 65), st.sampled_from([0x1001, 0x1003]))
junk_any = st.one_of(junk_text, junk_int, st.none(), st.booleans(), st.floats(),
                     st.binary(max_size=8))
CALLS = {
    "create_ward": lambda s, a: s.create_ward(a[0], a[1], a[2], a[3], at_us=a[4]),
    "create_bed": lambda s, a: s.create_bed(a[0], a[1], a[2], a[3], at_us=a[4]),
    "admit": lambda s, a: s.admit(a[0], a[1], a[2], devices=[a[3]], at_us=a[4]),
    "transfer": lambda s, a: s.transfer(a[0], a[1], a[2], at_us=a[4]),
    "bind": lambda s, a: s.bind_device(a[0], a[1], a[3], at_us=a[4]),
    "swap": lambda s, a: s.swap_device(a[0], a[1], a[3], a[2], at_us=a[4]),
    "clean": lambda s, a: s.record_cleaning(a[0], a[3], a[1], at_us=a[4]),
    "grant": lambda s, a: s.grant_role(a[0], a[1], a[2], Resource(ScopeKind.WARD, a[3]),
                                       at_us=a[4]),
    "authorize": lambda s, a: s.authorize(a[0], a[2], Resource(ScopeKind.PATIENT, a[1]),
                                          a[4]),
    "spans": lambda s, a: s.device_spans(a[1], a[4], a[3]),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hostile_store(request, tmp_path_factory):
    if request.param == "sqlite":
        target = str(tmp_path_factory.mktemp("hostile") / "c.sqlite")
    else:
        target = fresh_pg_target(request.getfixturevalue("pg_server"))
    s = open_store(target, log2_n=LOG2_N)
    build_world(s)
    s.admit("nurse1", "P1", "W1", devices=[0x1001], at_us=T0 + MIN)
    yield s
    s.close()


def _counts(s) -> dict:
    with s.db.transaction(write=False) as tx:
        return {t: tx.scalar(f"SELECT COUNT(*) FROM {t}") for t in TABLES}


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(sorted(CALLS)),
       actor=st.sampled_from(["root", "nurse1", "vendor", "ghost", "", None, 7]),
       args=st.tuples(junk_any, junk_any, junk_any, junk_any | st.integers(T0, T0 + 9 * MIN)))
def test_hostile_calls_are_refused_cleanly(hostile_store, call, actor, args):
    s = hostile_store
    before = _counts(s)
    try:
        CALLS[call](s, (actor, *args))
    except (UsageError, AccessDenied) as exc:
        assert str(exc)
        assert _counts(s) == before
