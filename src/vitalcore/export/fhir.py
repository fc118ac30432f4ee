"""FHIR R4 Observation bundles of a patient's or a ward's numerics.

Each numeric becomes an ``Observation`` (status ``final``, or ``preliminary`` when the
device flagged it questionable) with:

- ``category`` vital-signs (for the codes with a LOINC term) and the R4 vital-signs
  profile of the measurement in ``meta.profile`` (heart rate, oxygen saturation,
  respiratory rate, body temperature, blood pressure);
- ``code``: the LOINC coding(s), then the IEEE 11073-10101 MDC coding
  (system ``urn:iso:std:iso:11073:10101``);
- ``valueQuantity`` in UCUM (system ``http://unitsofmeasure.org``), or
  ``dataAbsentReason`` ``not-performed`` when the device sent no value;
- ``subject``: ``Patient/<patient_id>`` (or a logical reference by identifier when the
  id is not a valid FHIR id), ``device``: ``Device/<EUI-64 of the device id>``;
- ``effectiveDateTime`` with milliseconds and the UTC offset of ``tz``.

NIBP systolic, diastolic and mean measured at the same instant become one blood
pressure panel (LOINC 85354-9) with one ``component`` each. Observation ids are UUIDv5
of (patient, device, time, code), so exporting the same data twice gives the same ids.
The bundle is of type ``collection``.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
import pyarrow as pa

from ..errors import UsageError
from ..protocol import NumericCode, NumericStatus
from ._rows import PatientInfo, check_tz, format_value, local_time, observation_groups, usable
from .codes import BP_PANEL_LOINC, TERMS, Term

__all__ = ["observation_bundle", "observation_bundle_json"]

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ],
    "text": "Vital Signs",
}
_ABSENT = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "not-performed",
            "display": "Not Performed",
        }
    ]
}
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
_PROFILES = {
    NumericCode.HR: "heartrate",
    NumericCode.SPO2: "oxygensat",
    NumericCode.RESP_RATE: "resprate",
    NumericCode.TEMP: "bodytemp",
}
_BP = (NumericCode.NIBP_SYS, NumericCode.NIBP_DIA, NumericCode.NIBP_MAP)
_BP_PANEL_MDC = (150032, "MDC_PRESS_BLD_NONINV")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_NAMESPACE = uuid.UUID("6b1c9a8e-3f0e-5a4e-9c1d-7a6f0e2b4c11")


def _code(term: Term) -> dict[str, Any]:
    coding = [{"system": LOINC, "code": c, "display": d} for c, d in term.loinc]
    coding.append({"system": MDC, "code": str(term.mdc), "display": term.mdc_ref})
    return {"coding": coding, "text": term.text}


def _value(term: Term, status: int, value: float | None) -> dict[str, Any]:
    """``valueQuantity`` or ``dataAbsentReason`` (as a dict to merge)."""
    if not usable(status, value):
        return {"dataAbsentReason": _ABSENT}
    return {
        "valueQuantity": {
            "value": float(format_value(value)),
            "unit": term.unit_text,
            "system": UCUM,
            "code": term.ucum,
        }
    }


def _subject(info: PatientInfo, system: str) -> dict[str, Any]:
    pid = info.patient_id
    ref: dict[str, Any] = (
        {"reference": f"Patient/{pid}"}
        if _FHIR_ID.match(pid)
        else {"identifier": {"system": system, "value": pid}}
    )
    name = " ".join(n for n in (info.given_name, info.family_name) if n)
    if name:
        ref["display"] = name
    return ref


def observation_bundle(
    numerics: pa.Table,
    *,
    patients: Mapping[str, PatientInfo] | None = None,
    tz: _dt.tzinfo = _dt.UTC,
    patient_system: str = "urn:vitalcore:patient",
) -> dict[str, Any]:
    """A FHIR R4 ``Bundle`` (type collection) of vital-signs Observations, as a dict.

    Parameters
    ----------
    numerics : pyarrow.Table
        A span-scoped :meth:`~vitalcore.clinical.records.Records.numerics` result
        (patient_id, ward_id, device_id, ts_us, code, status, value).
    patients : mapping of patient_id to PatientInfo, optional
        Adds the patient's name as ``subject.display``; a patient missing from it is a
        :class:`UsageError`.
    tz : datetime.tzinfo
        Time zone of ``effectiveDateTime`` (default UTC, written ``+00:00``).
    patient_system : str
        Identifier system of a patient id that is not a valid FHIR id
        (``[A-Za-z0-9-.]{1,64}``), referenced logically instead.
    """
    check_tz(tz)
    if not isinstance(patient_system, str) or not patient_system:
        raise UsageError("patient_system must be a non-empty URI string")
    entries = []
    for obs in observation_groups(numerics, patients):
        info = patients[obs.patient_id] if patients is not None else PatientInfo(obs.patient_id)
        eui = f"{obs.device_id:016X}"
        common = {
            "subject": _subject(info, patient_system),
            "effectiveDateTime": local_time(obs.ts_us, tz).isoformat(timespec="milliseconds"),
            "device": {"reference": f"Device/{eui}", "display": f"EUI-64 {eui}"},
        }
        key = f"{obs.patient_id}\x00{obs.device_id}\x00{obs.ts_us}"
        bp = [e for e in obs.entries if e[0] in _BP]
        for code, status, value in obs.entries:
            if code in _BP:
                continue
            term = TERMS[code]
            resource = {"resourceType": "Observation", "id": str(uuid.uuid5(_NAMESPACE, f"{key}\x00{code}"))}
            if code in _PROFILES:
                resource["meta"] = {"profile": [_PROFILE + _PROFILES[code]]}
            resource["status"] = "preliminary" if status == NumericStatus.QUESTIONABLE else "final"
            if term.loinc:
                resource["category"] = [_CATEGORY]
            resource["code"] = _code(term)
            resource.update(common)
            resource.update(_value(term, status, value))
            entries.append(resource)
        if bp:
            resource = {
                "resourceType": "Observation",
                "id": str(uuid.uuid5(_NAMESPACE, f"{key}\x00bp")),
                "meta": {"profile": [_PROFILE + "bp"]},
                "status": "preliminary"
                if any(s == NumericStatus.QUESTIONABLE for _, s, _ in bp)
                else "final",
                "category": [_CATEGORY],
                "code": {
                    "coding": [
                        {"system": LOINC, "code": BP_PANEL_LOINC[0], "display": BP_PANEL_LOINC[1]},
                        {"system": MDC, "code": str(_BP_PANEL_MDC[0]), "display": _BP_PANEL_MDC[1]},
                    ],
                    "text": "Blood pressure (NIBP)",
                },
                **common,
                "component": [
                    {"code": _code(TERMS[c]), **_value(TERMS[c], s, v)} for c, s, v in bp
                ],
            }
            entries.append(resource)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries],
    }


def observation_bundle_json(numerics: pa.Table, **kwargs: Any) -> bytes:
    """:func:`observation_bundle` encoded as JSON (UTF-8 bytes, via msgspec)."""
    return msgspec.json.encode(observation_bundle(numerics, **kwargs))
