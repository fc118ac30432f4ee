"""Credentials files and the CLIs' argument errors."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.server import Accounts
from vitalcore.sim import cli, run
from vitalcore.sim.ward import load_credentials, provision_ward, save_credentials


def test_provision_and_credentials_round_trip(tmp_path):
    acc = Accounts(log2_n=10)
    creds = provision_ward(3, acc)
    assert len(set(creds.values())) == 3 and all(len(s) >= 24 for s in creds.values())
    for dev, secret in creds.items():
        assert acc.check(f"{dev:016x}", secret) is not None
        assert acc.check(f"{dev:016x}", secret + "x") is None
    path = tmp_path / "sim.json"
    save_credentials(path, creds)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_credentials(path) == creds


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=20), c,
                                                                        max_size=4),
                    max_leaves=12))
def test_malformed_credentials_are_a_usage_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("c") / "sim.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError):
        load_credentials(path)


@pytest.mark.parametrize("doc", [
    {"version": 1, "devices": {"0000000000000000": "s"}},  # device id 0
    {"version": 1, "devices": {"00000000000012AB": "s"}},  # upper case
    {"version": 1, "devices": {"00000000000012ab": ""}},
    {"version": 2, "devices": {"00000000000012ab": "s"}},
    {"version": 1, "devices": {}},
])
def test_bad_entries_refused(tmp_path, doc):
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError):
        load_credentials(tmp_path / "c.json")


def test_simulate_cli_argument_errors(tmp_path, capsys):
    assert cli.main(["--accounts", str(tmp_path / "missing.json")]) == 2
    save_credentials(tmp_path / "c.json", {0x12AB: "secret"})
    assert cli.main(["--accounts", str(tmp_path / "c.json"), "--devices", "2"]) == 2
    assert "--devices must be in 1..1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--accounts", str(tmp_path / "c.json"), "--transport", "coap"])


def test_run_cli_refuses_zero_devices(capsys):
    assert run.main(["--devices", "0", "--port", "0"]) == 2
    assert "devices must be >= 1" in capsys.readouterr().err
