"""The JSON channel, the CLI and the notifiers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_world import DEVICES, PNG

from vitalcore.errors import UsageError
from vitalcore.service import (
    CallbackNotifier,
    FanoutNotifier,
    MqttNotifier,
    Notice,
    OrderRequest,
    order_to_json,
    request_from_json,
)
from vitalcore.service.cli import main
from vitalcore.service.notify import notice_topic

BODY = {"device_id": f"{DEVICES[1]:016x}", "description": "no ECG", "contact": "ext 9",
        "severity": "serious", "ward_id": "W1", "photos": [base64.b64encode(PNG).decode()]}


def test_json_request_round_trip(sqlite_world):
    req = request_from_json(json.dumps(BODY).encode())
    assert req.device_id == DEVICES[1] and req.photos == (PNG,)
    o = sqlite_world.desk.create_order("nurse1", req)
    out = order_to_json(o)
    assert out["device"]["id"] == BODY["device_id"] and out["severity"] == "serious"
    assert out["reported"] == "2025-11-26 00:10" and json.dumps(out)


@pytest.mark.parametrize("body, match", [
    ({**BODY, "extra": 1}, "unknown field"),
    ({**BODY, "device_id": "zz"}, "16 hex digits"),
    ({**BODY, "severity": "huge"}, "severity must be one of"),
    ({**BODY, "photos": ["%%%"]}, "not base64"),
    ({**BODY, "photos": [base64.b64encode(b"GIF89a").decode()]}, "JPEG, PNG or WebP"),
    ({k: v for k, v in BODY.items() if k != "contact"}, "contact"),
])
def test_bad_json_requests_name_the_problem(body, match):
    with pytest.raises(UsageError, match=match):
        request_from_json(json.dumps(body))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(
                               st.text(max_size=8), c, max_size=4), max_leaves=10)


@given(body=st.dictionaries(st.sampled_from(sorted(BODY) + ["x", "emergency", "floor"]),
                            json_values, max_size=8) | st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_hostile_json_gives_a_request_or_a_usage_error(body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        assert isinstance(request_from_json(raw), OrderRequest)
    except UsageError:
        pass


def _cli(capsys, *argv) -> tuple[int, object]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_cli_phone_intake_and_steps(sqlite_world, tmp_path, capsys):
    store = str(tmp_path / "svc.sqlite")
    photo = tmp_path / "fault.png"
    photo.write_bytes(PNG)
    code, out = _cli(capsys, "--store", store, "--actor", "nurse1", "create", "--device",
                     f"{DEVICES[1]:016x}", "--description", "screen black", "--contact",
                     "ward 1, ext 12", "--severity", "serious", "--ward", "W1", "--room", "12",
                     "--photo", str(photo))
    assert code == 0 and out["channel"] == "cli" and out["status"] == "open"
    label, month = out["order"], out["reported"][:7]  # the CLI runs on the wall clock
    code, out = _cli(capsys, "--store", store, "--actor", "biomed", "step", label, "respond")
    assert code == 0 and out["status"] == "responded"
    code, out = _cli(capsys, "--store", store, "show", label)
    assert [e["kind"] for e in out["timeline"]][:2] == ["reported", "photo"]
    assert {c["milestone"] for c in out["clocks"]} >= {"respond", "fix"}
    code, out = _cli(capsys, "--store", store, "list", "--status", "responded")
    assert [o["order"] for o in out] == [label]
    code, err = _cli(capsys, "--store", store, "--actor", "biomed", "step", label, "close")
    assert code == 2 and "no passed function test" in err
    code, err = _cli(capsys, "--store", store, "--actor", "nurse1", "step", label, "start")
    assert code == 3 and "access denied" in err
    code, err = _cli(capsys, "--store", store, "--actor", "nurse1", "create", "--device",
                     "000000000000beef", "--description", "x", "--contact", "y")
    assert code == 2 and "unknown device" in err
    html = tmp_path / "r.html"
    code, out = _cli(capsys, "--store", store, "report", "--month", month, "--html",
                     str(html))
    assert code == 0 and out["orders"] == 1 and "Monthly service report" in html.read_text()


def test_python_dash_m_runs_the_cli(sqlite_world, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "vitalcore.service", "--store",
                          str(tmp_path / "svc.sqlite"), "list"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == []


def test_notifiers():
    sent = []
    n = Notice("escalated", ("team/biomed", "vendor/ACME"), 0, "late", 7)
    MqttNotifier(lambda *a: sent.append(a)).notify(n)
    assert [(t, q, r) for t, _, q, r in sent] == [
        ("vc/v1/service/team/biomed/escalated", 1, False),
        ("vc/v1/service/vendor/ACME/escalated", 1, False)]
    assert json.loads(sent[0][1])["order"] == "WO-000007"
    with pytest.raises(UsageError):
        notice_topic("team/#", "escalated")
    got = []

    def broken(_n):
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        FanoutNotifier([CallbackNotifier(broken), CallbackNotifier(got.append)]).notify(n)
    assert got == [n]  # the others still heard it
