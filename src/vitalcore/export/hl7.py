"""HL7 v2.6 ORU^R01 messages in the IHE PCD-01 (Communicate PCD Data) style.

One message per observation set, i.e. per (patient, device, device time): ::

    MSH|^~\\&|VITALCORE|HOSPITAL|||20231115083000.000+0100||ORU^R01^ORU_R01|...|P|2.6|...
    PID|||p-1^^^VITALCORE^PI||Doe^Jane^^^^^L
    PV1||I|ICU^^12
    OBR|1|<id>^VITALCORE|<id>^VITALCORE|182777000^monitoring of patient^SNOMED-CT|||<time>
    OBX|1||69837^MDC_DEV_METER_PHYSIO_MULTI_PARAM_MDS^MDC|1|||||||X|||||||<EUI-64>^^<EUI-64>^EUI-64
    OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.0.0.1|72|264864^MDC_DIM_BEAT_PER_MIN^MDC^/min^/min^UCUM|||||F|||<time>||||<EUI-64>^^<EUI-64>^EUI-64

Segments are separated by carriage returns (``\\r``). Times carry the UTC offset of
``tz``. Free text (names, ward, bed, facility, application) is escaped with the HL7
escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, ``\\X0D\\``/``\\X0A\\`` for line breaks).
Observation result status (OBX-11): ``F`` valid, ``P`` questionable, ``X`` unavailable
(no value). The device is OBX-18 as an EUI-64 built from its 64-bit device id.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

import pyarrow as pa

from ..errors import UsageError
from ..protocol import NumericStatus
from ._rows import PatientInfo, check_tz, format_value, local_time, observation_groups, usable
from .codes import MDS_CODE, TERMS

__all__ = ["escape", "hl7_time", "oru_r01_messages"]

#: MSH-21: the IHE PCD-01 message profile.
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
#: OBR-4 of PCD-01 periodic data.
OBR_SERVICE = "182777000^monitoring of patient^SNOMED-CT"
_ESCAPES = str.maketrans(
    {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\", "\r": "\\X0D\\",
     "\n": "\\X0A\\"}
)
_STATUS = {NumericStatus.VALID: "F", NumericStatus.QUESTIONABLE: "P"}


def escape(text: str) -> str:
    """``text`` with HL7 v2 delimiters and line breaks as escape sequences."""
    if not isinstance(text, str):
        raise UsageError(f"HL7 free text must be a str, got {type(text).__name__}")
    return text.translate(_ESCAPES)


def hl7_time(ts_us: int, tz: _dt.tzinfo = _dt.UTC) -> str:
    """HL7 DTM with milliseconds and the UTC offset, e.g. ``20231115083000.123+0100``."""
    t = local_time(ts_us, tz)
    return t.strftime("%Y%m%d%H%M%S.") + f"{t.microsecond // 1000:03d}" + t.strftime("%z")


def _eui64(device_id: int) -> str:
    eui = f"{device_id:016X}"
    return f"{eui}^^{eui}^EUI-64"


def oru_r01_messages(
    numerics: pa.Table,
    *,
    patients: Mapping[str, PatientInfo] | None = None,
    tz: _dt.tzinfo = _dt.UTC,
    sending_application: str = "VITALCORE",
    sending_facility: str = "",
    assigning_authority: str = "VITALCORE",
    message_time_us: int | None = None,
) -> list[str]:
    """ORU^R01 v2.6 messages (IHE PCD-01) for the numerics of a patient or ward query.

    Parameters
    ----------
    numerics : pyarrow.Table
        A span-scoped :meth:`~vitalcore.clinical.records.Records.numerics` result
        (patient_id, ward_id, device_id, ts_us, code, status, value). One message per
        (patient, device, ts_us) group of consecutive rows; codes without a term in
        :data:`~vitalcore.export.codes.TERMS` are left out.
    patients : mapping of patient_id to PatientInfo, optional
        Names and beds; a patient missing from it is a :class:`UsageError`. Without
        it, names are sent as unknown (``^^^^^^U``) and the bed empty.
    tz : datetime.tzinfo
        Time zone of every timestamp (default UTC, written ``+0000``).
    sending_application, sending_facility, assigning_authority : str
        MSH-3, MSH-4 and PID-3.4 (escaped).
    message_time_us : int, optional
        MSH-7, µs since the epoch; default the observation time, so that exporting
        the same data twice gives the same bytes.

    Returns
    -------
    list of str
        One message per group, segments joined by ``"\\r"``. MSH-10 (control id) is
        ``<EUI-64 of the device>-<ts_us>``, unique per device and observation time.
    """
    check_tz(tz)
    app, fac, auth = escape(sending_application), escape(sending_facility), escape(assigning_authority)
    out = []
    for obs in observation_groups(numerics, patients):
        info = patients[obs.patient_id] if patients is not None else PatientInfo(obs.patient_id)
        when = hl7_time(obs.ts_us, tz)
        sent = when if message_time_us is None else hl7_time(message_time_us, tz)
        control = f"{obs.device_id:016X}-{obs.ts_us}"
        if info.family_name is None and info.given_name is None:
            name = "^^^^^^U"
        else:
            name = f"{escape(info.family_name or '')}^{escape(info.given_name or '')}^^^^^L"
        device = _eui64(obs.device_id)
        segments = [
            f"MSH|^~\\&|{app}|{fac}|||{sent}||ORU^R01^ORU_R01|{control}|P|2.6|||NE|AL||"
            f"UNICODE UTF-8|||{PCD01_PROFILE}",
            f"PID|||{escape(obs.patient_id)}^^^{auth}^PI||{name}",
            f"PV1||I|{escape(obs.ward_id or '')}^^{escape(info.bed or '')}",
            f"OBR|1|{control}^{app}|{control}^{app}|{OBR_SERVICE}|||{when}",
            f"OBX|1||{MDS_CODE[0]}^{MDS_CODE[1]}^MDC|1|||||||X|||||||{device}",
        ]
        for k, (code, status, value) in enumerate(obs.entries, start=1):
            term = TERMS[code]
            ok = usable(status, value)
            segments.append(
                f"OBX|{k + 1}|{'NM' if ok else ''}|{term.mdc}^{term.mdc_ref}^MDC|1.0.0.{k}|"
                f"{format_value(value) if ok else ''}|"
                f"{term.unit_mdc}^{term.unit_ref}^MDC^{escape(term.ucum)}^{escape(term.ucum)}^UCUM|"
                f"||||{_STATUS.get(status, 'F') if ok else 'X'}|||{when}||||{device}"
            )
        out.append("\r".join(segments))
    return out
