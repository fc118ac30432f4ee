"""A virtual wearable with scenarios, a NIBP cuff and commands: frames plus ground truth.

:class:`ScenarioWearable` extends :class:`vitalcore.simulator.VirtualWearable` (ECG,
red/IR pleth, numerics every second, status every 10 s) without I/O:

- **NIBP**: :meth:`ScenarioWearable.command` with ``START_NIBP`` answers ACK
  ACCEPTED, then every tick carries a CUFF frame (100 Hz, 0.01 mmHg per count) of a
  real deflation (:func:`~vitalcore.dsp.simulate.simulate_cuff_deflation` at the
  device's true ``nibp_sys``/``nibp_dia``); when the deflation ends the device runs
  its own oscillometric algorithm (:func:`~vitalcore.dsp.nibp.estimate_nibp`) on the
  quantised cuff signal and sends a NUMERICS frame (NIBP_SYS/DIA/MAP/NIBP_PR) and ACK
  COMPLETED, or ACK FAILED with ``detail`` = index in
  :data:`~vitalcore.dsp.nibp.NIBP_REASONS`.
- **Battery drain**: ``battery_drain_pct_h`` (%/h) from ``battery``; truth in
  :meth:`ScenarioWearable.battery_at`.
- **Leads-off episode**: during ``leads_off_s = (start, end)`` (s of device time after
  ``start_us``) the ECG is flat (0 µV), HR is UNAVAILABLE, status frames carry
  ``LEADS_OFF`` and the ``leads_off_bitmap``; an extra status frame is sent at both
  edges (protocol.md §6: "on every change").
- **Accessory hours**: ``powered_s`` and the accessories' counters start where the
  constructor puts them and advance with device time; truth in
  :meth:`ScenarioWearable.powered_at`.

Frames of one 250 ms tick come from :meth:`ScenarioWearable.next_tick`; frames caused
by a command between ticks (acknowledgements) are carried by the next tick.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .. import codec
from .. import protocol as P
from ..dsp.nibp import NIBP_REASONS, estimate_nibp
from ..dsp.simulate import simulate_cuff_deflation
from ..errors import UsageError
from ..simulator import ECG_GAIN_UV, FRAME_US, VirtualWearable

__all__ = ["ScenarioWearable", "CUFF_FS", "CUFF_GAIN_MMHG", "NIBP_KS", "NIBP_KD"]

CUFF_FS = 100  #: cuff pressure sampling rate, Hz
CUFF_GAIN_MMHG = 0.01  #: mmHg per cuff count
NIBP_KS = 0.55  #: characteristic ratios of the simulated cuff, the same the device's
NIBP_KD = 0.75  #: algorithm is "validated" with (a device maker calibrates its own)
ACK_DETAIL_STOPPED = 0xFF  #: ACK FAILED detail of a measurement ended by STOP_NIBP

_HEADER = struct.Struct("<4xBB2x8xIq")  # frame type, flags, seq, ts (protocol.py layout)


@dataclass
class _Measurement:
    command_id: int
    cuff: np.ndarray  # int16 counts
    pos: int = 0


@dataclass
class ScenarioWearable(VirtualWearable):
    """A :class:`~vitalcore.simulator.VirtualWearable` with scenarios and commands.

    Parameters (beyond those of VirtualWearable)
    ----------------------------------------------
    nibp_sys, nibp_dia : float
        True arterial pressures, mmHg (20 <= dia < sys <= 300).
    nibp_deflate_mmhg_s : float
        Cuff deflation rate, mmHg/s (3 is clinical practice; up to ~5 keeps the
        estimate within 3 mmHg, faster ones shorten tests at a loss of accuracy).
    battery_drain_pct_h : float
        Battery drain, %/h of device time, from ``battery`` (%).
    leads_off_s : (float, float), optional
        Leads-off episode, seconds of device time after ``start_us`` (start, end).
    leads_off_bitmap : int
        Electrodes off during the episode (bit 0 RA, 1 LA, 2 LL, 3 RL, 4..9 V1..V6).
    """

    nibp_sys: float = 120.0
    nibp_dia: float = 80.0
    nibp_deflate_mmhg_s: float = 3.0
    battery_drain_pct_h: float = 8.0
    leads_off_s: tuple[float, float] | None = None
    leads_off_bitmap: int = 0b0010

    def __post_init__(self) -> None:
        if not 20 <= self.nibp_dia < self.nibp_sys <= 300:
            raise UsageError(f"need 20 <= nibp_dia < nibp_sys <= 300 mmHg, got "
                             f"{self.nibp_sys}/{self.nibp_dia}")
        if not 0.5 <= self.nibp_deflate_mmhg_s <= 10:
            raise UsageError("nibp_deflate_mmhg_s must be within 0.5..10 mmHg/s")
        if self.leads_off_s is not None and not 0 <= self.leads_off_s[0] < self.leads_off_s[1]:
            raise UsageError(f"leads_off_s must be (start, end) with 0 <= start < end, "
                             f"got {self.leads_off_s!r}")
        super().__post_init__()
        self._pending: list[bytes] = []  # command answers waiting for the next tick
        self._nibp: _Measurement | None = None
        self._leads_was_off = False
        self.nibp_results: list[tuple[int, object]] = []  # (command id, NIBPResult)

    # -- ground truth ---------------------------------------------------------------------
    def battery_at(self, ts_us: int) -> int:
        """Battery (%) the device reports at device time ``ts_us``."""
        hours = max(0, ts_us - self.start_us) / 3.6e9
        return max(0, int(self.battery - self.battery_drain_pct_h * hours))

    def leads_off_at(self, ts_us: int) -> bool:
        """Whether the leads-off episode covers device time ``ts_us``."""
        if self.leads_off_s is None:
            return False
        t = (ts_us - self.start_us) / 1e6
        return self.leads_off_s[0] <= t < self.leads_off_s[1]

    def powered_at(self, ts_us: int) -> dict[int, int]:
        """Powered-on seconds at ``ts_us``: key 0 the terminal, else the AccessoryKind."""
        elapsed = max(0, ts_us - self.start_us) // 1_000_000
        out = {0: self.powered_s + elapsed}
        out.update({a.kind: a.powered_s + elapsed for a in self.accessories})
        return out

    @property
    def measuring(self) -> bool:
        """Whether a NIBP measurement is running."""
        return self._nibp is not None

    # -- frames -----------------------------------------------------------------------------
    def next_tick(self) -> list[bytes]:
        """The frames of the next 250 ms tick (with pending command answers first)."""
        return self.frames_until(self.now_us + 1)

    def _seq_of(self, frame_type: int, channel: int = 0) -> int:
        return self._next_seq(P.stream_id(frame_type, channel))

    def _tick(self) -> list[bytes]:
        ts = self.now_us
        off = self.leads_off_at(ts)
        out, self._pending = self._pending, []
        for frame in super()._tick():
            ftype, _, seq, fts = _HEADER.unpack_from(frame)
            if ftype == P.FrameType.STATUS:
                frame = self._status(seq, fts)
            elif off and ftype == P.FrameType.ECG:
                n = int.from_bytes(frame[32:34], "little")  # the frame's sample count
                frame = codec.encode_waveform(ftype, self.device_id, seq, fts, P.EcgLead.II,
                                              np.zeros(n, np.int16), self.ecg_fs, ECG_GAIN_UV)
            elif off and ftype == P.FrameType.NUMERICS:
                frame = self._vitals(seq, fts, hr_available=False)
            out.append(frame)
        if off != self._leads_was_off:  # status on every change
            self._leads_was_off = off
            out.append(self._status(self._seq_of(P.FrameType.STATUS), ts))
        if self._nibp is not None:
            out.extend(self._cuff_tick(ts))
        return out

    def _vitals(self, seq: int, ts: int, hr_available: bool) -> bytes:
        t = self.truth
        hr_status = P.NumericStatus.VALID if hr_available else P.NumericStatus.UNAVAILABLE
        return codec.encode_numerics(self.device_id, seq, ts, [
            (P.NumericCode.HR, t.hr_bpm if hr_available else 0.0, hr_status),
            (P.NumericCode.PR, t.hr_bpm),
            (P.NumericCode.SPO2, t.spo2),
            (P.NumericCode.RESP_RATE, t.resp_rate),
            (P.NumericCode.TEMP, t.temp_c),
        ])

    def _status(self, seq: int, ts: int) -> bytes:
        off = self.leads_off_at(ts)
        powered = self.powered_at(ts)
        flags = P.StatusFlag.LEADS_OFF if off else 0
        return codec.encode_status(
            self.device_id, seq, ts, battery=self.battery_at(ts), flags=int(flags),
            carrier=P.Carrier.LTE, rssi=-75, leads_off=self.leads_off_bitmap if off else 0,
            powered_s=powered[0],
            accessories=[(a.kind, a.serial, powered[a.kind]) for a in self.accessories],
        )

    def _ack(self, command_id: int, kind: int, status: int, detail: int = 0) -> bytes:
        return codec.encode_ack(self.device_id, self._seq_of(P.FrameType.ACK), self.now_us,
                                command_id, kind, status, detail)

    # -- commands ---------------------------------------------------------------------------
    def command(self, command_id: int, kind: int, arg: int = 0) -> None:
        """Handle a COMMAND (protocol.md §8); the answers go out with the next tick.

        START_NIBP: ACK ACCEPTED and a measurement (BUSY if one runs); STOP_NIBP: ends a
        running measurement (its START gets ACK FAILED, detail 255) and ACK COMPLETED;
        IDENTIFY: ACK COMPLETED; anything else: ACK UNSUPPORTED.
        """
        K, S = P.CommandKind, P.AckStatus
        if kind == K.START_NIBP:
            if self._nibp is not None:
                self._pending.append(self._ack(command_id, kind, S.BUSY))
                return
            self._pending.append(self._ack(command_id, kind, S.ACCEPTED))
            p = simulate_cuff_deflation(
                self.nibp_sys, self.nibp_dia, self.hr_bpm, CUFF_FS,
                seed=self.seed * 7919 + command_id, ks=NIBP_KS, kd=NIBP_KD,
                deflate_mmhg_s=self.nibp_deflate_mmhg_s,
            )
            cuff = np.round(p / CUFF_GAIN_MMHG).clip(-32768, 32767).astype(np.int16)
            self._nibp = _Measurement(command_id, cuff)
        elif kind == K.STOP_NIBP:
            if self._nibp is not None:
                self._pending.append(self._ack(self._nibp.command_id, K.START_NIBP, S.FAILED,
                                               ACK_DETAIL_STOPPED))
                self._nibp = None
            self._pending.append(self._ack(command_id, kind, S.COMPLETED))
        elif kind == K.IDENTIFY:
            self._pending.append(self._ack(command_id, kind, S.COMPLETED))
        else:
            self._pending.append(self._ack(command_id, kind, S.UNSUPPORTED))

    def _cuff_tick(self, ts: int) -> list[bytes]:
        m = self._nibp
        assert m is not None
        n = CUFF_FS // 4
        chunk = m.cuff[m.pos: m.pos + n]
        m.pos += len(chunk)
        out = [codec.encode_waveform(P.FrameType.CUFF, self.device_id, self._seq_of(P.FrameType.CUFF),
                                     ts, 0, chunk, CUFF_FS, CUFF_GAIN_MMHG)]
        if m.pos < len(m.cuff):
            return out
        self._nibp = None
        res = estimate_nibp(m.cuff * CUFF_GAIN_MMHG, CUFF_FS, ks=NIBP_KS, kd=NIBP_KD)
        self.nibp_results.append((m.command_id, res))
        ts_end = ts + FRAME_US - 1
        if res.ok:
            entries = [(P.NumericCode.NIBP_SYS, res.systolic), (P.NumericCode.NIBP_DIA, res.diastolic),
                       (P.NumericCode.NIBP_MAP, res.mean)]
            if np.isfinite(res.pulse_rate):
                entries.append((P.NumericCode.NIBP_PR, res.pulse_rate))
            out.append(codec.encode_numerics(self.device_id, self._seq_of(P.FrameType.NUMERICS),
                                             ts_end, entries))
            out.append(self._ack(m.command_id, P.CommandKind.START_NIBP, P.AckStatus.COMPLETED))
        else:
            out.append(self._ack(m.command_id, P.CommandKind.START_NIBP, P.AckStatus.FAILED,
                                 NIBP_REASONS.index(res.reason)))
        return out
