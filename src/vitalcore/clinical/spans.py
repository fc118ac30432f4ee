"""Where a patient's data lives: the device spans of one patient record.

A patient keeps one continuous record through transfers and device swaps. The data
itself is stored per device (wire frames carry ``device_id``), so a patient's history is
the union of the device data inside each :class:`DeviceSpan` of the patient.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DeviceSpan"]


class DeviceSpan(NamedTuple):
    """One device bound to one patient over ``[start_us, end_us)``.

    Attributes
    ----------
    patient_id : str
        The patient record's id.
    device_id : int
        Wire-format device id (u64, non-zero: protocol.md header field "device id").
    start_us : int
        Binding start, µs since the Unix epoch (UTC), inclusive.
    end_us : int or None
        Binding end, µs since the epoch, exclusive; ``None`` while still bound.
    ward_id : str or None
        The ward the patient was in at ``start_us`` (``None`` in transport).
        :meth:`vitalcore.clinical.ClinicalStore.device_spans` splits a binding where the
        patient changed place, so there the ward holds over the whole span.
    """

    patient_id: str
    device_id: int
    start_us: int
    end_us: int | None
    ward_id: str | None
