"""Exports of patient history to hospital systems: HL7 v2.6 (IHE PCD-01) and FHIR R4.

Both take the table of :meth:`vitalcore.clinical.records.Records.numerics` for a
patient or ward scope. Neither needs a third-party package at run time.
See ``docs/history.md``, "Exports".
"""

from __future__ import annotations

from ._rows import PatientInfo
from .codes import TERMS, Term
from .fhir import observation_bundle, observation_bundle_json
from .hl7 import escape, hl7_time, oru_r01_messages

__all__ = [
    "PatientInfo",
    "TERMS",
    "Term",
    "escape",
    "hl7_time",
    "observation_bundle",
    "observation_bundle_json",
    "oru_r01_messages",
]
