"""Virtual wearables: realistic frame traffic with known ground truth.

A :class:`VirtualWearable` stands for one monitoring terminal: ECG lead II at 250 Hz,
red/IR pleth at 100 Hz, numerics every second and a status frame every 10 s, encoded
as wire-format v1 frames with one waveform frame per stream every 250 ms, the way
``docs/protocol.md`` recommends. Its signals come from :mod:`vitalcore.dsp.simulate`
(pre-computed for ``signal_s`` seconds and repeated), so the heart rate, SpO2 and
beat positions it sends are known and algorithms can be checked against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import codec
from . import protocol as P
from .dsp.simulate import simulate_ecg, simulate_ppg

__all__ = ["Accessory", "VirtualWearable", "WearableTruth"]

FRAME_US = 250_000
ECG_GAIN_UV = 2.5  # µV per count
PLETH_GAIN = 1.0


@dataclass
class WearableTruth:
    """What a virtual wearable really measured (for checking the pipeline)."""

    hr_bpm: float
    spo2: float
    resp_rate: float
    temp_c: float
    ecg_fs: int
    beats: np.ndarray  # R-peak sample indices within one signal period
    period_samples: int  # ECG samples per signal period (the signal repeats)


@dataclass
class Accessory:
    kind: int
    serial: str
    powered_s: int


@dataclass
class VirtualWearable:
    """One simulated terminal.

    Parameters
    ----------
    device_id : int
        Non-zero device id.
    start_us : int
        Device time of its first frame, µs since the Unix epoch.
    hr_bpm, spo2 : float
        True heart rate (bpm) and SpO2 (%).
    seed : int
        Random seed of its signals.
    ecg_fs, pleth_fs : int
        Sampling rates in Hz. A frame holds the samples of its 250 ms tick (62 or 63 at
        250 Hz) and is stamped with the time of its first sample.
    signal_s : int
        Seconds of signal computed once and repeated.
    """

    device_id: int
    start_us: int
    hr_bpm: float = 72.0
    spo2: float = 97.0
    seed: int = 0
    ecg_fs: int = 250
    pleth_fs: int = 100
    signal_s: int = 60
    battery: float = 100.0
    powered_s: int = 0
    accessories: list[Accessory] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        ecg_mv, beats = simulate_ecg(self.signal_s, self.ecg_fs, self.hr_bpm, seed=self.seed)
        red, ir, _ = simulate_ppg(
            self.signal_s, self.pleth_fs, spo2=self.spo2, hr=self.hr_bpm, seed=self.seed
        )
        self._ecg = np.round(ecg_mv * 1000.0 / ECG_GAIN_UV).clip(-32768, 32767).astype(np.int16)
        # one gain for both channels and no offset: counts stay proportional to light,
        # so the ratio of ratios (AC/DC red over AC/DC IR) and with it SpO2 survive
        k = 30000.0 / max(float(np.max(red)), float(np.max(ir)))
        self._red = np.round(red * k).astype(np.int16)
        self._ir = np.round(ir * k).astype(np.int16)
        self.truth = WearableTruth(
            hr_bpm=self.hr_bpm,
            spo2=self.spo2,
            resp_rate=float(rng.uniform(12, 20)),
            temp_c=float(rng.uniform(36.4, 37.4)),
            ecg_fs=self.ecg_fs,
            beats=np.asarray(beats, np.int64),
            period_samples=len(self._ecg),
        )
        if not self.accessories:
            self.accessories = [
                Accessory(P.AccessoryKind.LEAD_WIRE, f"LW-{self.device_id:08d}", 0),
                Accessory(P.AccessoryKind.BATTERY, f"BAT-{self.device_id:08d}", 0),
            ]
        self._q = 0  # 250 ms frames emitted
        self._seq: dict[int, int] = {}

    def _next_seq(self, stream: int) -> int:
        s = self._seq.get(stream, 0)
        self._seq[stream] = (s + 1) & 0xFFFFFFFF
        return s

    @property
    def now_us(self) -> int:
        """Device time of the next frame."""
        return self.start_us + self._q * FRAME_US

    def frames_until(self, t_us: int) -> list[bytes]:
        """Encode every frame due before device time ``t_us``, in order."""
        out: list[bytes] = []
        while self.now_us < t_us:
            out.extend(self._tick())
        return out

    def _tick(self) -> list[bytes]:
        q, ts, dev = self._q, self.now_us, self.device_id
        frames = []
        for ftype, channel, sig, fs, gain in (
            (P.FrameType.ECG, P.EcgLead.II, self._ecg, self.ecg_fs, ECG_GAIN_UV),
            (P.FrameType.PLETH, P.PlethChannel.RED, self._red, self.pleth_fs, PLETH_GAIN),
            (P.FrameType.PLETH, P.PlethChannel.IR, self._ir, self.pleth_fs, PLETH_GAIN),
        ):
            i0, i1 = q * fs // 4, (q + 1) * fs // 4  # this tick's samples of the stream
            idx = np.arange(i0, i1) % len(sig)  # the signal repeats every signal_s
            first_us = self.start_us + i0 * 1_000_000 // fs
            seq = self._next_seq(P.stream_id(ftype, channel))
            frames.append(
                codec.encode_waveform(ftype, dev, seq, first_us, channel, sig[idx], fs, gain)
            )
        if q % 4 == 0:  # numerics every second
            t = self.truth
            frames.append(
                codec.encode_numerics(
                    dev,
                    self._next_seq(P.stream_id(P.FrameType.NUMERICS, 0)),
                    ts,
                    [
                        (P.NumericCode.HR, t.hr_bpm),
                        (P.NumericCode.PR, t.hr_bpm),
                        (P.NumericCode.SPO2, t.spo2),
                        (P.NumericCode.RESP_RATE, t.resp_rate),
                        (P.NumericCode.TEMP, t.temp_c),
                    ],
                )
            )
        if q % 40 == 0:  # status every 10 s; battery drains ~8 %/h
            elapsed = q // 4
            frames.append(
                codec.encode_status(
                    dev,
                    self._next_seq(P.stream_id(P.FrameType.STATUS, 0)),
                    ts,
                    battery=max(0, int(self.battery - elapsed * 8 / 3600)),
                    carrier=P.Carrier.LTE,
                    rssi=-75,
                    powered_s=self.powered_s + elapsed,
                    accessories=[(a.kind, a.serial, a.powered_s + elapsed) for a in self.accessories],
                )
            )
        self._q += 1
        return frames

