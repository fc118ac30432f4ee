"""Test helpers: a real Store in a tmp dir, an engine on fake clocks, scenario wearables."""

from __future__ import annotations

import numpy as np

from vitalcore.alarms import AlarmEngine, AlarmLog
from vitalcore.simulator import ECG_GAIN_UV
from vitalcore.storage import Store

START = 1_764_115_200_000_000


class Clock:
    """Fake wall and monotonic clock (s), advanced by the test."""

    def __init__(self) -> None:
        self.t = START / 1e6

    def __call__(self) -> float:
        return self.t


class Rig:
    """Store + engine + event capture; ``run(devices, seconds)`` feeds ticks in order."""

    def __init__(self, tmp_path, **engine_kw) -> None:
        self.clock = Clock()
        self.store = Store(tmp_path / "store", sync="none", flush_interval_s=0)
        self.log = AlarmLog(tmp_path / "alarms", fsync=False)
        self.engine = AlarmEngine(alarm_log=self.log, clock=self.clock, monotonic=self.clock,
                                  **engine_kw)
        self.engine.attach(self.store)
        self.events = []
        self.engine.add_listener(self.events.append)

    def run(self, devices, seconds: float, skip=lambda dev, t: False) -> None:
        for _ in range(round(seconds * 4)):
            for w in devices:
                frames = w.next_tick()
                if not skip(w.device_id, self.clock.t - START / 1e6):
                    self.store.feed(b"".join(frames), w.device_id)
            self.store.commit()
            assert self.engine.wait_idle(60)  # lockstep: the fake clock matches the data
            self.clock.t += 0.25

    def raised(self, code: str, device_id: int | None = None):
        return [e for e in self.events if e.kind == "raised" and e.alarm.code == code
                and (device_id is None or e.alarm.device_id == device_id)]

    def close(self) -> None:
        self.engine.close()
        self.store.close()


def put_ecg(w, start_s: float, mv: np.ndarray) -> None:
    """Overwrite the wearable's (repeating) ECG from ``start_s`` with ``mv`` (mV)."""
    i = round(start_s * w.ecg_fs)
    w._ecg[i:i + len(mv)] = np.round(mv * 1000.0 / ECG_GAIN_UV).clip(-32768, 32767)
