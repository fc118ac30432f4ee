"""HL7 v2.6 ORU^R01 (IHE PCD-01): parsed back with the `hl7` package, structure checked."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import hl7
import numpy as np
import pyarrow as pa
import pytest
from export_rows import TS, C, numerics
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.export import PatientInfo, escape, hl7_time, oru_r01_messages
from vitalcore.export.codes import TERMS

VITALS = numerics(
    [
        (11, TS, C.HR, 0, 72.0),
        (11, TS, C.SPO2, 1, 97.0),
        (11, TS, C.PR, 0, 71.0),
        (11, TS, C.NIBP_SYS, 0, 121.0),
        (11, TS, C.NIBP_DIA, 0, 79.0),
        (11, TS, C.NIBP_MAP, 0, 93.0),
        (11, TS, C.RESP_RATE, 0, 16.0),
        (11, TS, C.TEMP, 2, float("nan")),
        (11, TS + 1_000_000, C.HR, 0, 73.0),
        (12, TS + 1_000_000, C.TEMP, 0, 36.7),
    ]
)


def segments(message: str) -> list[list[str]]:
    return [s.split("|") for s in message.split("\r")]


def test_one_message_per_device_and_time_in_pcd01_order():
    msgs = oru_r01_messages(VITALS, tz=ZoneInfo("Europe/Paris"), sending_facility="CHU")
    assert len(msgs) == 3
    for m in msgs:
        names = [s[0] for s in segments(m)]
        assert names[:5] == ["MSH", "PID", "PV1", "OBR", "OBX"]
        assert set(names[5:]) == {"OBX"}
        assert "\n" not in m and m.count("\r") == len(names) - 1
    first = segments(msgs[0])
    assert len(first) == 5 + 8
    msh, pid, pv1, obr = first[:4]
    # MSH-1 is the field separator itself, so MSH-n is msh[n - 1]
    assert len(msh) == 21 and msh[1] == "^~\\&" and msh[2] == "VITALCORE" and msh[3] == "CHU"
    assert msh[8] == "ORU^R01^ORU_R01" and msh[10] == "P" and msh[11] == "2.6"
    assert msh[14] == "NE" and msh[15] == "AL" and msh[17] == "UNICODE UTF-8"
    assert msh[20].startswith("IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO")
    assert msh[6] == "20231114231320.123+0100" == obr[7]
    assert msh[9] == f"{11:016X}-{TS}"
    assert len(pid) == 6 and pid[3] == "p-1^^^VITALCORE^PI" and pid[5] == "^^^^^^U"
    assert len(pv1) == 4 and pv1[2] == "I" and pv1[3] == "ICU^^"
    assert len(obr) == 8 and obr[4] == "182777000^monitoring of patient^SNOMED-CT"
    mds = first[4]
    assert len(mds) == 19 and mds[3].startswith("69837^") and mds[11] == "X"
    assert mds[18] == "000000000000000B^^000000000000000B^EUI-64"


def test_obx_codes_units_values_status_and_device():
    obx = [s for s in segments(oru_r01_messages(VITALS)[0]) if s[0] == "OBX"][1:]
    by_code = {int(s[3].split("^")[0]): s for s in obx}
    assert set(by_code) == {TERMS[c].mdc for c in (C.HR, C.SPO2, C.PR, C.NIBP_SYS, C.NIBP_DIA,
                                                   C.NIBP_MAP, C.RESP_RATE, C.TEMP)}
    hr = by_code[147842]
    assert len(hr) == 19
    assert hr[1] == "2" and hr[2] == "NM" and hr[3] == "147842^MDC_ECG_HEART_RATE^MDC"
    assert hr[4] == "1.0.0.1" and hr[5] == "72"
    assert hr[6] == "264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM"
    assert hr[11] == "F" and hr[14] == "20231114221320.123+0000"
    assert hr[18] == "000000000000000B^^000000000000000B^EUI-64"
    assert by_code[150456][11] == "P" and by_code[150456][5] == "97"  # questionable SpO2
    assert by_code[150033][6].startswith("266016^MDC_DIM_MMHG^MDC^mm[Hg]")
    assert by_code[151562][6].startswith("264928^MDC_DIM_RESP_PER_MIN^MDC")
    temp = by_code[150364]
    assert temp[2] == "" and temp[5] == "" and temp[11] == "X"  # unavailable: no value
    assert [s[1] for s in obx] == [str(i) for i in range(2, 2 + len(obx))]
    assert len({s[4] for s in obx}) == len(obx)  # unique sub-ids
    last = segments(oru_r01_messages(VITALS)[2])
    assert last[-1][5] == "36.7" and last[-1][6].startswith("268192^MDC_DIM_DEGC^MDC^Cel")


def test_messages_parse_with_the_hl7_package():
    for m in oru_r01_messages(VITALS, tz=ZoneInfo("America/New_York")):
        msg = hl7.parse(m)
        assert str(msg.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        assert str(msg.segment("MSH")[12]) == "2.6"
        obx = msg.segments("OBX")
        assert len(obx) >= 2 and all(len(s) == 19 for s in obx)  # OBX + 18 fields
        dtm = str(obx[1][14])
        assert dtm.endswith("-0500")  # November: EST
        parsed = hl7.parse_datetime(dtm)
        ts_us = int(str(msg.segment("MSH")[10]).split("-")[1])
        assert parsed.tzinfo is not None
        want = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ts_us)
        assert parsed == want.replace(microsecond=want.microsecond // 1000 * 1000)


text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
)


@settings(max_examples=80, deadline=None)
@given(family=text, given_name=text, bed=text, ward=text, patient=text, facility=text)
def test_free_text_is_escaped_and_round_trips(family, given_name, bed, ward, patient, facility):
    table = numerics([(11, TS, C.HR, 0, 60.0)], patient=patient, ward=ward)
    info = {patient: PatientInfo(patient, family, given_name, bed)}
    (m,) = oru_r01_messages(table, patients=info, sending_facility=facility)
    segs = segments(m)
    assert [s[0] for s in segs] == ["MSH", "PID", "PV1", "OBR", "OBX", "OBX"]
    assert [len(s) for s in segs] == [21, 6, 4, 8, 19, 19]  # no delimiter leaked
    msg = hl7.parse(m)
    pid, pv1 = msg.segment("PID"), msg.segment("PV1")
    assert msg.unescape(str(pid[3][0][0])) == patient
    assert msg.unescape(str(pid[5][0][0])) == family
    assert msg.unescape(str(pid[5][0][1])) == given_name
    assert msg.unescape(str(pv1[3][0][0])) == ward
    assert msg.unescape(str(pv1[3][0][2])) == bed
    assert msg.unescape(str(msg.segment("MSH")[4])) == facility


def test_escape_and_time_helpers():
    assert escape("a|b^c&d~e\\f\r\ng") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\\\X0A\\g"
    assert hl7_time(0) == "19700101000000.000+0000"
    assert hl7_time(TS, ZoneInfo("Asia/Kolkata")) == "20231115034320.123+0530"
    with pytest.raises(UsageError):
        escape(5)


def test_bad_input_is_a_usage_error():
    with pytest.raises(UsageError, match="lacks column"):
        oru_r01_messages(VITALS.drop_columns(["patient_id"]))
    with pytest.raises(UsageError, match="pyarrow.Table"):
        oru_r01_messages({"patient_id": []})
    with pytest.raises(UsageError, match="not in patients"):
        oru_r01_messages(VITALS, patients={"other": PatientInfo("other")})
    with pytest.raises(UsageError, match="tzinfo"):
        oru_r01_messages(VITALS, tz="Europe/Paris")
    nulls = VITALS.set_column(0, "patient_id", pa.array([None] * VITALS.num_rows, pa.string()))
    with pytest.raises(UsageError, match="patient_id"):
        oru_r01_messages(nulls)


def test_empty_and_unknown_codes_give_no_message():
    assert oru_r01_messages(VITALS.slice(0, 0)) == []
    assert oru_r01_messages(numerics([(11, TS, 200, 0, 1.0)])) == []


def test_records_table_with_dictionary_labels_exports():
    labelled = VITALS.set_column(
        0, "patient_id", pa.array(VITALS.column("patient_id").to_pylist()).dictionary_encode()
    )
    assert oru_r01_messages(labelled) == oru_r01_messages(VITALS)
    assert np.all([m.startswith("MSH|") for m in oru_r01_messages(labelled)])
