"""Lifecycle data out: CSV, XLSX (openpyxl, imported on use) and a JSON API payload.

Tables are lists of flat dicts with fixed columns (:data:`ASSET_COLUMNS`,
:data:`DUE_COLUMNS`, :data:`USAGE_COLUMNS`). Times are ISO 8601 UTC strings, hours
rounded to 0.01 h. Text cells that a spreadsheet would run as a formula (starting with
``= + - @`` or a tab/CR) are prefixed with ``'`` in CSV and XLSX: serials come from
devices and must not become formulas in the quality team's spreadsheet.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import UsageError
from .model import Asset, DueItem, FleetStats, UsageRow

__all__ = [
    "ASSET_COLUMNS",
    "DUE_COLUMNS",
    "USAGE_COLUMNS",
    "SCHEMA",
    "asset_record",
    "due_record",
    "usage_record",
    "to_csv",
    "to_xlsx",
    "api_payload",
]

#: Identifier and version of the JSON payload's layout.
SCHEMA = "vitalcore.lifecycle/1"

ASSET_COLUMNS = ("asset_id", "kind", "serial", "device_id", "model", "hospital_id", "status",
                 "registered", "hours", "limit_h", "warn_h", "remaining_h", "alert", "resets",
                 "first_seen", "last_seen", "installed_on", "commissioned", "expiry",
                 "limit_reached_est")
DUE_COLUMNS = ("asset_id", "kind", "serial", "device_id", "model", "reason", "alert", "hours",
               "limit_h", "remaining_h", "due", "installed_on", "status")
USAGE_COLUMNS = ("month", "ward_id", "bound_h", "powered_h", "devices")


def _iso(t_us: int | None) -> str | None:
    if t_us is None:
        return None
    return _dt.datetime.fromtimestamp(t_us / 1e6, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dev(d: int | None) -> str | None:
    return None if d is None else f"{d:016x}"


def _h(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def asset_record(a: Asset) -> dict[str, Any]:
    """One asset as a flat record (:data:`ASSET_COLUMNS`)."""
    return {
        "asset_id": a.asset_id, "kind": a.kind.value, "serial": a.serial,
        "device_id": _dev(a.device_id), "model": a.model, "hospital_id": a.hospital_id,
        "status": a.status.value, "registered": a.registered, "hours": _h(a.hours),
        "limit_h": a.limit_h, "warn_h": a.warn_h, "remaining_h": _h(a.remaining_h),
        "alert": a.alert.name.lower(), "resets": a.resets,
        "first_seen": _iso(a.first_seen_us), "last_seen": _iso(a.last_seen_us),
        "installed_on": _dev(a.installed_on), "commissioned": _iso(a.commissioned_us),
        "expiry": _iso(a.expiry_us), "limit_reached_est": _iso(a.limit_at_us),
    }


def due_record(d: DueItem) -> dict[str, Any]:
    """One due-list entry as a flat record (:data:`DUE_COLUMNS`)."""
    a = d.asset
    return {
        "asset_id": a.asset_id, "kind": a.kind.value, "serial": a.serial,
        "device_id": _dev(a.device_id), "model": a.model, "reason": d.reason,
        "alert": d.alert.name.lower(), "hours": _h(a.hours), "limit_h": a.limit_h,
        "remaining_h": _h(d.remaining_h), "due": _iso(d.due_us),
        "installed_on": _dev(a.installed_on), "status": a.status.value,
    }


def usage_record(u: UsageRow) -> dict[str, Any]:
    """One usage row as a flat record (:data:`USAGE_COLUMNS`)."""
    return {"month": u.month, "ward_id": u.ward_id, "bound_h": _h(u.bound_h),
            "powered_h": _h(u.powered_h), "devices": u.devices}


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def _checked(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[list[Any]]:
    out = []
    for row in rows:
        extra = set(row) - set(columns)
        if extra:
            raise UsageError(f"record has columns not in the table: {sorted(extra)}")
        out.append([_cell(row.get(c)) for c in columns])
    return out


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with a header line (empty cells for None)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in _checked(rows, columns):
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_xlsx(sheets: Mapping[str, tuple[Iterable[Mapping[str, Any]], Sequence[str]]]) -> bytes:
    """A workbook with one sheet per entry ``name → (rows, columns)``, as bytes.

    Needs openpyxl (``pip install 'vitalcore[apps]'``).
    """
    try:
        from openpyxl import Workbook
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UsageError("XLSX export needs openpyxl: pip install 'vitalcore[apps]'") from exc
    if not sheets:
        raise UsageError("a workbook needs at least one sheet")
    wb = Workbook()
    wb.remove(wb.active)
    for name, (rows, columns) in sheets.items():
        ws = wb.create_sheet(title=name[:31])
        ws.append(list(columns))
        for row in _checked(rows, columns):
            ws.append(row)
        ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def api_payload(assets: Iterable[Asset], due: Iterable[DueItem], stats: FleetStats,
                usage: Iterable[UsageRow], *, generated_us: int,
                source: str = "vitalcore") -> dict[str, Any]:
    """The JSON document pushed to a hospital quality system (``schema`` :data:`SCHEMA`).

    Keys: ``schema``, ``source``, ``generated`` (ISO UTC), ``statistics``, ``assets``,
    ``due``, ``usage`` (records as in the CSV tables).
    """
    return {
        "schema": SCHEMA,
        "source": source,
        "generated": _iso(generated_us),
        "statistics": stats._asdict(),
        "assets": [asset_record(a) for a in assets],
        "due": [due_record(d) for d in due],
        "usage": [usage_record(u) for u in usage],
    }
