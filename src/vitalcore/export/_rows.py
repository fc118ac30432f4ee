"""What both exporters share: checking the input table, grouping it, formatting values."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..protocol import NumericStatus
from .codes import TERMS

__all__ = ["PatientInfo", "Observation", "observation_groups", "format_value", "check_tz"]

_NEEDED = ("patient_id", "device_id", "ts_us", "code", "status", "value")


class PatientInfo(NamedTuple):
    """Demographics and bed of a patient, for the exports (all optional but the id).

    Attributes
    ----------
    patient_id : str
        The patient record's id (as in :class:`~vitalcore.clinical.spans.DeviceSpan`).
    family_name, given_name : str or None
        Name; unknown when None.
    bed : str or None
        Bed label within the ward (HL7 PV1-3.3).
    """

    patient_id: str
    family_name: str | None = None
    given_name: str | None = None
    bed: str | None = None


class Observation(NamedTuple):
    """The numerics of one device at one instant for one patient."""

    patient_id: str
    ward_id: str | None
    device_id: int
    ts_us: int
    entries: list[tuple[int, int, float]]  #: (code, status, value), codes with a Term


def check_tz(tz: _dt.tzinfo) -> _dt.tzinfo:
    if not isinstance(tz, _dt.tzinfo):
        raise UsageError(f"tz must be a datetime.tzinfo (e.g. ZoneInfo('Europe/Paris')), got {tz!r}")
    return tz


def local_time(ts_us: int, tz: _dt.tzinfo) -> _dt.datetime:
    """``ts_us`` (µs since the epoch, UTC) as an aware datetime in ``tz``."""
    utc = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=ts_us)
    return utc.astimezone(tz)


def format_value(value: float) -> str:
    """The shortest decimal that reads back as the same float32 ("36.7", "97")."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def observation_groups(
    numerics: pa.Table, patients: Mapping[str, PatientInfo] | None = None
) -> Iterator[Observation]:
    """Group a labelled numerics table by (patient, device, ts_us), in table order.

    ``numerics`` is what :meth:`vitalcore.clinical.records.Records.numerics` returns
    for a span scope (columns patient_id, [ward_id,] device_id, ts_us, code, status,
    value). Codes without a :data:`~vitalcore.export.codes.TERMS` entry are skipped.

    Raises
    ------
    UsageError
        A column is missing, or a patient_id is null or absent from ``patients``.
    """
    if not isinstance(numerics, pa.Table):
        raise UsageError(f"numerics must be a pyarrow.Table, got {type(numerics).__name__}")
    missing = [c for c in _NEEDED if c not in numerics.column_names]
    if missing:
        raise UsageError(
            f"numerics lacks column(s) {missing}: export a span-scoped Records.numerics() table"
        )
    if numerics.num_rows == 0:
        return
    cols = {c: numerics.column(c).to_pylist() for c in _NEEDED}
    wards = (
        numerics.column("ward_id").to_pylist()
        if "ward_id" in numerics.column_names
        else [None] * numerics.num_rows
    )
    current: Observation | None = None
    for i in range(numerics.num_rows):
        pid = cols["patient_id"][i]
        if not isinstance(pid, str) or not pid:
            raise UsageError(f"row {i}: patient_id must be a non-empty string, got {pid!r}")
        if patients is not None and pid not in patients:
            raise UsageError(f"row {i}: patient {pid!r} is not in patients")
        code = cols["code"][i]
        if code not in TERMS:
            continue
        key = (pid, wards[i], cols["device_id"][i], cols["ts_us"][i])
        if current is None or key != current[:4]:
            if current is not None:
                yield current
            current = Observation(*key, [])
        status = cols["status"][i]
        value = cols["value"][i]
        current.entries.append((code, status, value))
    if current is not None:
        yield current


def usable(status: int, value: float | None) -> bool:
    """Whether an entry carries a value (not UNAVAILABLE, finite)."""
    return status != NumericStatus.UNAVAILABLE and value is not None and math.isfinite(value)
