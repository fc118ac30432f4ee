"""MqttDevice's command path without a network: hostile payloads, redelivery, other devices."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.sim.mqtt_device import MqttDevice
from vitalcore.sim.wearable import ScenarioWearable

START = 1_764_115_200_000_000
DEV = 0x5600_0001


def device() -> MqttDevice:
    asyncio.set_event_loop(asyncio.new_event_loop())  # gmqtt.Client wants a current loop
    w = ScenarioWearable(device_id=DEV, start_us=START, ecg_fs=256, signal_s=5)
    return MqttDevice(w, "secret", "127.0.0.1", 1)


def cmd(cid: int, kind: int, device: int = DEV) -> bytes:
    return codec.encode_command(device, cid, START, cid, kind, 0)


def test_commands_executed_once_and_others_refused():
    d = device()
    assert d.handle_command_payload(cmd(1, P.CommandKind.IDENTIFY)) == 1
    assert d.handle_command_payload(cmd(1, P.CommandKind.IDENTIFY)) == 0  # QoS 1 redelivery
    assert d.handle_command_payload(cmd(2, P.CommandKind.IDENTIFY, device=DEV + 1)) == 0
    assert d.handle_command_payload(codec.encode_ack(DEV, 0, START, 3, 1, 0)) == 0  # not a command
    assert d.handle_command_payload(cmd(4, P.CommandKind.IDENTIFY) + cmd(5, 0x7E)) == 2
    c = d.counters
    assert (c.commands, c.commands_answered, c.bad_commands) == (5, 3, 2)
    dec = FrameDecoderHelper.decode(d.wearable.next_tick())
    assert dec["command_id"].tolist() == [1, 4, 5]
    assert dec["status"].tolist() == [P.AckStatus.COMPLETED, P.AckStatus.COMPLETED,
                                      P.AckStatus.UNSUPPORTED]


class FrameDecoderHelper:
    @staticmethod
    def decode(frames: list[bytes]):
        batch = codec.FrameDecoder().decode(b"".join(frames), DEV)
        assert not batch.rejects.any()
        return batch.tables["acks"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(0, 199))
def test_hostile_cmd_payloads_never_crash(noise, cut):
    """Random bytes, or a valid command spliced into noise: never an exception; a command
    that survives intact is executed once, garbage is counted."""
    d = DEVICE
    before = d.counters.commands_answered
    good = cmd(10_000 + d.counters.commands, P.CommandKind.IDENTIFY)
    cut = min(cut, len(noise))
    payload = noise[:cut] + good + noise[cut:]
    executed = d.handle_command_payload(payload)
    assert executed == d.counters.commands_answered - before
    assert executed <= 1 + payload.count(b"VC")
    assert d.handle_command_payload(noise) >= 0


DEVICE = device()
