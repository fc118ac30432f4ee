"""Signal algorithms: QRS detection, VF/VFL detection, heart rate, SpO2, oscillometric NIBP, simulators.

Hot loops are private numba kernels (``cache=True``, compiled on first use and cached on
disk); the public functions and classes below validate their arguments and raise
:class:`vitalcore.errors.UsageError` (a ``ValueError``) for impossible ones.  Bad signal
content (NaN, flat line, clipping, noise) never raises: it lowers quality flags and
suppresses beats.  See ``docs/dsp.md`` for methods and validation figures.
"""

from __future__ import annotations

from vitalcore.dsp.nibp import NIBP_REASONS, NIBPResult, estimate_nibp
from vitalcore.dsp.qrs import FS_MAX, FS_MIN, QRSDetector, detect_qrs
from vitalcore.dsp.qrs_bank import QRSBank
from vitalcore.dsp.quality import (
    CLIPPED,
    FLAT,
    LEADS_OFF,
    NOISY,
    NONFINITE,
    ECGQuality,
    ecg_quality,
)
from vitalcore.dsp.rate import HeartRate, heart_rate
from vitalcore.dsp.scoring import (
    BEAT_SYMBOLS,
    BeatScore,
    flutter_episodes,
    score_beats,
    score_vf_windows,
)
from vitalcore.dsp.simulate import (
    simulate_cuff_deflation,
    simulate_ecg,
    simulate_ppg,
    spo2_to_ratio,
)
from vitalcore.dsp.spo2 import SPO2_FLAGS, SpO2Estimator, SpO2Result, estimate_spo2
from vitalcore.dsp.vf import VFDetector, VFResult, detect_vf, vf_episodes

__all__ = [
    "BEAT_SYMBOLS",
    "BeatScore",
    "CLIPPED",
    "ECGQuality",
    "FLAT",
    "FS_MAX",
    "FS_MIN",
    "HeartRate",
    "LEADS_OFF",
    "NIBPResult",
    "NIBP_REASONS",
    "NOISY",
    "NONFINITE",
    "QRSBank",
    "QRSDetector",
    "SPO2_FLAGS",
    "SpO2Estimator",
    "SpO2Result",
    "VFDetector",
    "VFResult",
    "detect_qrs",
    "detect_vf",
    "ecg_quality",
    "estimate_nibp",
    "estimate_spo2",
    "flutter_episodes",
    "heart_rate",
    "score_beats",
    "score_vf_windows",
    "simulate_cuff_deflation",
    "simulate_ecg",
    "simulate_ppg",
    "spo2_to_ratio",
    "vf_episodes",
]
