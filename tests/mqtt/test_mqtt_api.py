"""The public surface of vitalcore.mqtt: names, stubs, twins, exception contract."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from mqtt_helpers import ext_codec, ref_codec

import vitalcore.mqtt as M
from vitalcore.errors import PeerDataError
from vitalcore.mqtt import MqttProtocolError

STUB = Path(ext_codec.__file__).with_name("mqttcodec.pyi")


def test_every_public_name_resolves():
    for name in M.__all__:
        assert getattr(M, name) is not None, name
    assert M.MqttParser is ext_codec.MqttParser  # the extension, never the twin
    assert set(M.__all__) <= set(dir(M))


def test_twin_and_extension_export_the_same_api():
    assert sorted(ext_codec.__all__) == sorted(ref_codec.__all__)
    for name in ext_codec.__all__:
        assert name in M.__all__


def test_stub_declares_every_extension_name():
    text = STUB.read_text()
    declared = set(re.findall(r"^(?:def|class) (\w+)", text, re.M))
    assert declared == set(ext_codec.__all__)


def test_protocol_error_contract():
    e = MqttProtocolError(0x95, "too large")
    assert isinstance(e, PeerDataError)
    assert (e.reason_code, e.message, e.packets) == (0x95, "too large", [])
    assert str(e) == "0x95: too large"
    again = pickle.loads(pickle.dumps(e))
    assert (again.reason_code, again.message) == (0x95, "too large")
