"""The JSON channel: work-order requests in, orders out (msgspec, strict).

A request body::

    {"device_id": "0000000000001001",   # 16 hex digits (or an integer)
     "description": "no ECG trace", "contact": "nurse Li, ext 4411",
     "request_type": "emergency_repair", "severity": "serious", "emergency": false,
     "ward_id": "W1", "floor": "3", "room": "312",
     "photos": ["<base64 JPEG/PNG/WebP>", ...]}

Unknown fields, wrong types and bad values are :class:`~vitalcore.errors.UsageError`
with the field named.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from ..errors import UsageError
from .model import WorkOrder, minute
from .orders import OrderRequest
from .sla import DEFAULT_CONTRACT

__all__ = ["request_from_json", "order_to_json", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 << 20


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    device_id: str | int
    description: str
    contact: str
    request_type: str = "emergency_repair"
    severity: str = "general"
    emergency: bool = False
    ward_id: str | None = None
    floor: str = ""
    room: str = ""
    institution: str | None = None
    device_name: str | None = None
    serial: str | None = None
    fault_type: str = "reported"
    fault_us: int | None = None
    contract: str = DEFAULT_CONTRACT
    photos: list[str] = []


def parse_device_id(value: str | int) -> int:
    """A device id from 16 hex digits (the MQTT name) or an int."""
    if isinstance(value, bool):
        raise UsageError("device_id must be 16 hex digits or an integer")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or len(value) != 16:
        raise UsageError(f"device_id must be 16 hex digits, got {value!r:.40}")
    try:
        return int(value, 16)
    except ValueError:
        raise UsageError(f"device_id must be 16 hex digits, got {value!r:.40}") from None


def request_from_json(data: bytes | str | dict[str, Any]) -> OrderRequest:
    """Parse and validate a JSON work-order request (bytes/str body or a decoded dict)."""
    try:
        if isinstance(data, dict):
            body = msgspec.convert(data, _Body)
        else:
            if len(data) > MAX_BODY_BYTES:
                raise UsageError(f"request body over {MAX_BODY_BYTES} bytes")
            body = msgspec.json.decode(data, type=_Body)
    except msgspec.ValidationError as exc:
        raise UsageError(f"bad work-order request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise UsageError(f"work-order request is not valid JSON: {exc}") from None
    photos = []
    for i, p in enumerate(body.photos):
        try:
            photos.append(base64.b64decode(p, validate=True))
        except (binascii.Error, ValueError):
            raise UsageError(f"photos[{i}] is not base64") from None
    return OrderRequest(
        device_id=parse_device_id(body.device_id), description=body.description,
        contact=body.contact, request_type=body.request_type, severity=body.severity,
        emergency=body.emergency, ward_id=body.ward_id, floor=body.floor, room=body.room,
        institution=body.institution, device_name=body.device_name, serial=body.serial,
        fault_type=body.fault_type, fault_us=body.fault_us, contract=body.contract,
        photos=tuple(photos))


def order_to_json(order: WorkOrder) -> dict[str, Any]:
    """An order as a JSON-ready dict (times as µs and as ``YYYY-MM-DD HH:MM`` UTC)."""
    out: dict[str, Any] = {
        "order": order.label, "order_id": order.order_id, "status": order.status.value,
        "institution": order.institution, "contact": order.contact,
        "device": {"id": f"{order.device_id:016x}", "name": order.device_name,
                   "model": order.model, "serial": order.serial,
                   "years_in_use": order.years_in_use},
        "location": {"ward": order.ward_id, "floor": order.floor, "room": order.room},
        "description": order.description, "fault_type": order.fault_type,
        "request_type": order.request_type.value, "severity": order.severity.value,
        "emergency": order.emergency, "channel": order.channel.value,
        "auto_cause": order.auto_cause, "repeat_count": order.repeat_count,
        "evidence": order.evidence, "contract": order.contract,
        "sla_s": {m.value: s for m, s in order.sla_s.items()}, "team": order.team,
        "vendor": order.vendor_id, "created_by": order.created_by,
        "verified_by": order.verified_by, "verification_ref": order.verification_ref,
        "signed_off_by": order.signed_off_by, "follow_up": order.follow_up,
    }
    for name in ("fault_us", "reported_us", "notified_us", "responded_us", "started_us",
                 "fixed_us", "verified_us", "signed_off_us", "closed_us", "follow_up_due_us"):
        v = getattr(order, name)
        out[name] = v
        out[name[:-3]] = minute(v)
    return out
