"""Accounts, password hashes, the topic scheme and the ACL (the failed-login limiter:
test_login_limiter.py)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers import DEV, DEV2, DEV_NAME, accounts
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.mqtt.topics import topic_matches
from vitalcore.server import Accounts, hash_secret, may_publish, may_subscribe
from vitalcore.server.auth import verify_secret
from vitalcore.server.topics import (
    cmd_topic,
    device_name,
    filter_covers,
    parse_device_name,
    up_json_topic,
    up_topic,
    uplink_kind,
)


def test_hash_is_salted_scrypt_and_verifies():
    h1, h2 = hash_secret("pw", log2_n=10), hash_secret("pw", log2_n=10)
    assert h1.startswith("$scrypt$ln=10,r=8,p=1$") and h1 != h2  # per-hash salt
    assert verify_secret("pw", h1) and verify_secret(b"pw", h2)
    assert not verify_secret("pW", h1) and not verify_secret("", h1)
    assert hash_secret("x").startswith("$scrypt$ln=14,")  # documented default cost
    for bad in ("", "$bcrypt$x$y$z", "$scrypt$ln=99,r=8,p=1$AA$AA", "$scrypt$ln=10$AA$AA"):
        with pytest.raises(UsageError):
            verify_secret("pw", bad)
    with pytest.raises(UsageError):
        hash_secret("")


def test_check_devices_users_unknown_disabled():
    acc = accounts()
    p = acc.check(DEV_NAME, "dev-secret")
    assert p is not None and p.device_id == DEV and p.is_device
    assert acc.check(DEV_NAME, "wrong") is None
    assert acc.check("nobody", "dev-secret") is None
    assert acc.check(DEV_NAME, None) is None and acc.check(None, "x") is None
    u = acc.check("viewer", b"viewer-pw")
    assert u is not None and u.role == "viewer" and u.devices == {DEV} and not u.is_device
    acc.set_disabled("viewer")
    assert acc.check("viewer", "viewer-pw") is None  # also evicts the verified cache
    acc.set_disabled("viewer", False)
    assert acc.check("viewer", "viewer-pw") is u
    assert acc.remove("viewer") and acc.check("viewer", "viewer-pw") is None


def test_verified_cache_is_keyed_by_password_and_expires():
    acc = accounts()
    now = [1000.0]
    acc._clock = lambda: now[0]
    assert acc.cached(DEV_NAME, b"dev-secret") is None
    assert acc.check(DEV_NAME, "dev-secret") is not None
    assert acc.cached(DEV_NAME, b"dev-secret") is not None
    assert acc.cached(DEV_NAME, b"dev-secreT") is None
    now[0] += acc.cache_ttl_s + 1
    assert acc.cached(DEV_NAME, b"dev-secret") is None
    acc.check(DEV_NAME, "dev-secret")
    acc.add_device(DEV, "new-secret")  # any change empties the cache
    assert acc.cached(DEV_NAME, b"dev-secret") is None
    assert acc.check(DEV_NAME, "dev-secret") is None


def test_accounts_file_roundtrip_and_permissions(tmp_path):
    acc = accounts()
    acc.set_disabled("operator")
    path = tmp_path / "accounts.json"
    acc.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert "dev-secret" not in path.read_text() and doc["version"] == 1
    assert doc["users"]["integrator"]["grants"] == ["vc/v1/dev/+/up"]
    back = Accounts.load(path, log2_n=10)
    assert back.to_json() == acc.to_json()
    assert back.check(DEV_NAME, "dev-secret").device_id == DEV
    assert back.check("operator", "operator-pw") is None  # still disabled


@pytest.mark.parametrize("doc", [
    {"version": 2},
    {"version": 1, "devices": {"12ab": {"secret": "$scrypt$ln=10,r=8,p=1$AA$AA"}}},
    {"version": 1, "devices": {DEV_NAME: {}}},
    {"version": 1, "devices": {DEV_NAME: {"secret": "plain"}}},
    {"version": 1, "users": {"u": {"password": "$scrypt$ln=10,r=8,p=1$AA$AA", "role": "root"}}},
    {"version": 1, "users": {"u": {"password": "$scrypt$ln=10,r=8,p=1$AA$AA", "grants": ["a/#/b"]}}},
    {"version": 1, "users": {DEV_NAME: {"password": "$scrypt$ln=10,r=8,p=1$AA$AA"}}},
    {"version": 1, "users": []},
])
def test_malformed_accounts_rejected(doc):
    with pytest.raises(UsageError):
        Accounts.from_json(doc)


def test_topic_scheme():
    assert device_name(DEV) == "00000000000012ab"
    assert up_topic(DEV) == "vc/v1/dev/00000000000012ab/up"
    assert up_json_topic(DEV) == "vc/v1/dev/00000000000012ab/up/json"
    assert cmd_topic(DEV) == "vc/v1/dev/00000000000012ab/cmd"
    assert uplink_kind(up_topic(DEV)) == (DEV, False)
    assert uplink_kind(up_json_topic(DEV)) == (DEV, True)
    for t in (cmd_topic(DEV), "vc/v1/dev/00000000000012AB/up", "vc/v1/dev/12ab/up",
              "vc/v1/dev/0000000000000000/up", "vc/v1/dev/00000000000012ab/up/x"):
        assert uplink_kind(t) is None
    assert parse_device_name("ffffffffffffffff") == 2**64 - 1
    for bad in ("", "0000000000000000", "00000000000012AB", "0x0000000000012a", "1" * 17):
        assert parse_device_name(bad) is None
    with pytest.raises(UsageError):
        device_name(0)


def test_acl_device():
    d = accounts().principal(DEV_NAME)
    assert may_publish(d, up_topic(DEV)) and may_publish(d, up_json_topic(DEV))
    for t in (up_topic(DEV2), cmd_topic(DEV), up_topic(DEV) + "/x", "other", "vc/#"):
        assert not may_publish(d, t)
    assert may_subscribe(d, cmd_topic(DEV))
    for f in (cmd_topic(DEV2), "vc/v1/dev/+/cmd", "#", up_topic(DEV),
              "$share/g/" + cmd_topic(DEV), "vc/v1/dev/00000000000012ab/#"):
        assert not may_subscribe(d, f)


def test_acl_users():
    acc = accounts()
    viewer, integ, oper = (acc.principal(n) for n in ("viewer", "integrator", "operator"))
    assert may_subscribe(viewer, "vc/v1/dev/00000000000012ab/#")
    assert may_subscribe(viewer, up_topic(DEV)) and may_subscribe(viewer, cmd_topic(DEV))
    assert not may_subscribe(viewer, up_topic(DEV2)) and not may_subscribe(viewer, "vc/v1/dev/+/up")
    assert not may_subscribe(viewer, "#") and not may_subscribe(viewer, "vc/a/#/b")
    assert may_subscribe(integ, "vc/v1/dev/+/up") and may_subscribe(integ, up_topic(DEV2))
    assert may_subscribe(integ, "$share/fwd/vc/v1/dev/+/up")
    assert not may_subscribe(integ, "vc/v1/dev/+/up/json") and not may_subscribe(integ, "vc/v1/dev/#")
    assert not may_subscribe(integ, "vc/v1/dev/+/cmd")
    # publishing: only operators, only cmd topics of devices in scope; nobody forges uplinks
    assert not may_publish(viewer, cmd_topic(DEV)) and not may_publish(integ, cmd_topic(DEV))
    assert may_publish(oper, cmd_topic(DEV)) and may_publish(oper, cmd_topic(DEV2))
    assert not may_publish(oper, cmd_topic(0x99)) and not may_publish(oper, up_topic(DEV))
    admin = acc.add_user("admin", "admin-pw", role="admin")
    assert may_publish(admin, cmd_topic(0x99)) and not may_publish(admin, up_topic(0x99))
    assert may_subscribe(admin, "vc/v1/dev/+/up") and not may_subscribe(admin, "vc/#")


LEVEL = st.sampled_from(["a", "b", "vc", "$x", "+", "#"])


@st.composite
def filters(draw):
    levels = draw(st.lists(LEVEL, min_size=1, max_size=4))
    if "#" in levels:
        levels = levels[: levels.index("#") + 1]
    return "/".join(levels)


@settings(max_examples=300, deadline=None)
@given(filters(), filters(), st.lists(st.sampled_from(["a", "b", "vc", "$x", "c"]), min_size=1,
                                       max_size=5))
def test_filter_covers_is_sound(grant, flt, topic_levels):
    """If the grant covers the filter, every topic the filter matches, the grant matches."""
    topic = "/".join(topic_levels)
    if filter_covers(grant, flt) and topic_matches(flt, topic):
        assert topic_matches(grant, topic)
    if grant == flt:
        assert filter_covers(grant, flt)
