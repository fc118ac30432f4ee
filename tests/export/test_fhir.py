"""FHIR R4 Observation bundles: validated with fhir.resources' R4B models, codes checked."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import pytest
from export_rows import TS, C, numerics
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.export import PatientInfo, observation_bundle, observation_bundle_json

LOINC, MDC, UCUM = "http://loinc.org", "urn:iso:std:iso:11073:10101", "http://unitsofmeasure.org"


VITALS = numerics(
    [
        (11, TS, C.HR, 0, 72.0),
        (11, TS, C.SPO2, 1, 97.0),
        (11, TS, C.PR, 0, 71.0),
        (11, TS, C.NIBP_SYS, 0, 121.0),
        (11, TS, C.NIBP_DIA, 0, 79.0),
        (11, TS, C.NIBP_MAP, 0, 93.0),
        (11, TS, C.RESP_RATE, 0, 16.0),
        (11, TS, C.TEMP, 0, 36.7),
        (11, TS, C.PERF_INDEX, 2, float("nan")),
    ],
    dictionary=True,
)


def by_loinc(bundle: dict) -> dict[str, dict]:
    out = {}
    for e in bundle["entry"]:
        r = e["resource"]
        for c in r["code"]["coding"]:
            out[c["code"]] = r
    return out


def test_bundle_validates_against_the_r4b_models():
    data = json.loads(observation_bundle_json(VITALS, tz=ZoneInfo("Europe/Paris")))
    bundle = Bundle.model_validate(data)  # raises on any structural error
    assert bundle.type == "collection" and len(bundle.entry) == 7  # 3 BP values -> 1 panel
    for entry in bundle.entry:
        obs = Observation.model_validate(entry.resource.model_dump())
        assert entry.fullUrl == f"urn:uuid:{obs.id}"
        assert obs.subject.reference == "Patient/p-1"
        assert obs.device.reference == "Device/000000000000000B"
        assert obs.effectiveDateTime.isoformat() == "2023-11-14T23:13:20.123000+01:00"


def test_vital_signs_codes_units_and_profiles():
    obs = by_loinc(observation_bundle(VITALS))
    hr = obs["8867-4"]
    assert hr["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/heartrate"]
    assert hr["category"][0]["coding"][0]["code"] == "vital-signs"
    assert {"system": MDC, "code": "147842", "display": "MDC_ECG_HEART_RATE"} in hr["code"]["coding"]
    assert hr["valueQuantity"] == {"value": 72.0, "unit": "beats/minute", "system": UCUM, "code": "/min"}
    assert hr["status"] == "final" and hr["effectiveDateTime"] == "2023-11-14T22:13:20.123+00:00"
    spo2 = obs["59408-5"]
    assert spo2 is obs["2708-6"] and spo2["status"] == "preliminary"  # questionable
    assert spo2["valueQuantity"]["code"] == "%" and spo2["meta"]["profile"][0].endswith("oxygensat")
    assert obs["9279-1"]["valueQuantity"]["code"] == "/min"
    assert obs["8310-5"]["valueQuantity"] == {"value": 36.7, "unit": "°C", "system": UCUM, "code": "Cel"}
    assert obs["8889-8"]["code"]["coding"][1]["code"] == "149530"
    bp = obs["85354-9"]
    assert bp["meta"]["profile"][0].endswith("/bp") and "valueQuantity" not in bp
    comp = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert comp == {
        "8480-6": {"value": 121.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        "8462-4": {"value": 79.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        "8478-0": {"value": 93.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
    }
    pi = obs["150448"]  # no LOINC: MDC only, no vital-signs category; unavailable
    assert "category" not in pi and "valueQuantity" not in pi
    assert pi["dataAbsentReason"]["coding"][0]["code"] == "not-performed"


def test_ids_are_deterministic_and_unique():
    a, b = observation_bundle(VITALS), observation_bundle(VITALS)
    ids = [e["resource"]["id"] for e in a["entry"]]
    assert ids == [e["resource"]["id"] for e in b["entry"]] and len(set(ids)) == len(ids)


def test_patient_ids_that_are_not_fhir_ids_are_referenced_by_identifier():
    t = numerics([(11, TS, C.HR, 0, 60.0)], patient="MRN 12/34", dictionary=True)
    info = {"MRN 12/34": PatientInfo("MRN 12/34", "Doe", "Jane")}
    (entry,) = observation_bundle(t, patients=info, patient_system="urn:oid:1.2.3")["entry"]
    subject = entry["resource"]["subject"]
    assert subject == {"identifier": {"system": "urn:oid:1.2.3", "value": "MRN 12/34"}, "display": "Jane Doe"}
    Bundle.model_validate(observation_bundle(t, patients=info))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 2**64 - 1),
            st.integers(946_684_800_000_000, 4_102_444_799_999_999),
            st.sampled_from([int(c) for c in C]),
            st.sampled_from([0, 1, 2]),
            st.floats(0, 300, width=32),
        ),
        min_size=1,
        max_size=12,
    ),
    patient=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
)
def test_random_numerics_always_give_a_valid_bundle(rows, patient):
    data = observation_bundle_json(numerics(rows, patient, dictionary=True), tz=ZoneInfo("Pacific/Chatham"))
    bundle = Bundle.model_validate(json.loads(data))
    assert len(bundle.entry) >= 1
    for entry in bundle.entry:
        r = entry.resource
        assert r.subject.reference == f"Patient/{patient}"
        assert r.status in ("final", "preliminary")  # required binding, not checked by the models
        has_value = r.valueQuantity is not None or r.component is not None
        assert has_value or r.dataAbsentReason is not None


def test_bad_input_is_a_usage_error():
    with pytest.raises(UsageError, match="lacks column"):
        observation_bundle(VITALS.drop_columns(["code"]))
    with pytest.raises(UsageError, match="tzinfo"):
        observation_bundle(VITALS, tz=5)
    with pytest.raises(UsageError, match="patient_system"):
        observation_bundle(VITALS, patient_system="")
    assert observation_bundle(VITALS.slice(0, 0))["entry"] == []


def test_the_validator_is_not_vacuous():
    """What the models catch: datatypes, unknown elements, cardinality. Not value-set
    bindings (an unknown status code passes them), which the tests above check."""
    for path, bad in [
        (("effectiveDateTime",), "yesterday"),
        (("valueQuantity", "value"), "abc"),
        (("colour",), "red"),
        (("code",), [{"text": "a list where one CodeableConcept is expected"}]),
    ]:
        data = observation_bundle(VITALS)
        target = data["entry"][0]["resource"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        with pytest.raises(ValueError):
            Bundle.model_validate(data)
    data = observation_bundle(VITALS)
    data["entry"][0]["resource"]["status"] = "measured"
    Bundle.model_validate(data)  # accepted: bindings are not validated by fhir.resources
