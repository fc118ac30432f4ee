"""Terminology of the exports: each numeric code's MDC, UCUM and LOINC codes.

MDC codes are the IEEE 11073-10101 nomenclature's context-free codes
(``partition * 65536 + term code``; partition 2 = SCADA for the metrics, 4 = dimensions
for the units). LOINC codes are those of the FHIR R4 vital-signs profiles; a code
without a LOINC term (perfusion index, NIBP pulse rate) is exported with its MDC
coding only and without the vital-signs category.
"""

from __future__ import annotations

from typing import NamedTuple

from ..protocol import NumericCode

__all__ = ["Term", "TERMS", "BP_PANEL_LOINC", "MDS_CODE"]


class Term(NamedTuple):
    """How one :class:`~vitalcore.protocol.NumericCode` is coded in HL7 v2 and FHIR."""

    mdc: int  #: MDC context-free code of the metric
    mdc_ref: str  #: its reference id, e.g. ``MDC_ECG_HEART_RATE``
    unit_mdc: int  #: MDC code of the unit
    unit_ref: str  #: its reference id, e.g. ``MDC_DIM_BEAT_PER_MIN``
    ucum: str  #: UCUM code of the unit, e.g. ``/min``
    unit_text: str  #: human-readable unit
    loinc: tuple[tuple[str, str], ...]  #: (code, display) LOINC codings, may be empty
    text: str  #: display text


_BPM = (264864, "MDC_DIM_BEAT_PER_MIN", "/min", "beats/minute")
_PCT = (262688, "MDC_DIM_PERCENT", "%", "%")
_MMHG = (266016, "MDC_DIM_MMHG", "mm[Hg]", "mmHg")

#: Terms of every numeric code the wire format defines.
TERMS: dict[int, Term] = {
    NumericCode.HR: Term(147842, "MDC_ECG_HEART_RATE", *_BPM, (("8867-4", "Heart rate"),), "Heart rate"),
    NumericCode.PR: Term(
        149530, "MDC_PULS_OXIM_PULS_RATE", *_BPM,
        (("8889-8", "Heart rate by Pulse oximetry"),), "Pulse rate (SpO2)",
    ),
    NumericCode.SPO2: Term(
        150456, "MDC_PULS_OXIM_SAT_O2", *_PCT,
        (
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
            ("2708-6", "Oxygen saturation in Arterial blood"),
        ),
        "SpO2",
    ),
    NumericCode.NIBP_SYS: Term(
        150033, "MDC_PRESS_BLD_NONINV_SYS", *_MMHG, (("8480-6", "Systolic blood pressure"),),
        "NIBP systolic",
    ),
    NumericCode.NIBP_DIA: Term(
        150034, "MDC_PRESS_BLD_NONINV_DIA", *_MMHG, (("8462-4", "Diastolic blood pressure"),),
        "NIBP diastolic",
    ),
    NumericCode.NIBP_MAP: Term(
        150035, "MDC_PRESS_BLD_NONINV_MEAN", *_MMHG, (("8478-0", "Mean blood pressure"),),
        "NIBP mean",
    ),
    NumericCode.RESP_RATE: Term(
        151562, "MDC_RESP_RATE", 264928, "MDC_DIM_RESP_PER_MIN", "/min", "breaths/minute",
        (("9279-1", "Respiratory rate"),), "Respiratory rate",
    ),
    NumericCode.TEMP: Term(
        150364, "MDC_TEMP_BODY", 268192, "MDC_DIM_DEGC", "Cel", "°C",
        (("8310-5", "Body temperature"),), "Body temperature",
    ),
    NumericCode.PERF_INDEX: Term(150448, "MDC_PULS_OXIM_PERF_REL", *_PCT, (), "Perfusion index"),
    NumericCode.NIBP_PR: Term(149546, "MDC_PULS_RATE_NON_INV", *_BPM, (), "Pulse rate (NIBP)"),
}

#: LOINC blood pressure panel that groups systolic, diastolic and mean in FHIR.
BP_PANEL_LOINC = ("85354-9", "Blood pressure panel with all children optional")

#: The device (MDS) of a PCD-01 message: a multi-parameter physiological monitor.
MDS_CODE = (69837, "MDC_DEV_METER_PHYSIO_MULTI_PARAM_MDS")
