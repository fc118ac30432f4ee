"""Numerics tables as :class:`vitalcore.clinical.Records` returns them, for the export tests."""

from __future__ import annotations

import pyarrow as pa

from vitalcore import protocol as P

TS = 1_700_000_000_123_456  # 2023-11-14T22:13:20.123456Z
C = P.NumericCode


def numerics(rows: list[tuple], patient: str = "p-1", ward: str | None = "ICU", *,
             dictionary: bool = False) -> pa.Table:
    """rows: (device_id, ts_us, code, status, value); patient/ward columns dictionary-
    encoded (as Records returns them) if ``dictionary``, plain strings otherwise."""
    dev, ts, code, status, value = zip(*rows, strict=True)
    patient_id = pa.array([patient] * len(rows), pa.string())
    ward_id = pa.array([ward] * len(rows), pa.string())
    if dictionary:
        patient_id, ward_id = patient_id.dictionary_encode(), ward_id.dictionary_encode()
    return pa.table(
        {
            "patient_id": patient_id,
            "ward_id": ward_id,
            "device_id": pa.array(dev, pa.uint64()),
            "seq": pa.array(range(len(rows)), pa.uint32()),
            "ts_us": pa.array(ts, pa.int64()),
            "code": pa.array(code, pa.uint8()),
            "status": pa.array(status, pa.uint8()),
            "value": pa.array(value, pa.float32()),
        }
    )
