"""``python -m vitalcore.service``: the service desk from a terminal (phone intake).

Every command opens the clinical store (``--store``: a SQLite path or a PostgreSQL
connection string), acts as ``--actor`` (a clinical user) and prints JSON. Errors go
to stderr with exit status 2 (bad input, refused) or 3 (access denied)::

    python -m vitalcore.service --store clinical.sqlite --actor desk.amy create \\
        --device 0000000000001001 --description "screen black" --contact "ward 3, ext 12" \\
        --severity serious --ward W1 --room 312 --photo fault.jpg
    python -m vitalcore.service --store clinical.sqlite list --status open
    python -m vitalcore.service --store clinical.sqlite --actor biomed.wu step WO-000001 respond
    python -m vitalcore.service --store clinical.sqlite report --month 2026-11 --pdf nov.pdf
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..clinical import open_store
from ..errors import AccessDenied, UsageError, VitalcoreError
from .desk import ServiceDesk
from .jsonio import order_to_json, parse_device_id
from .model import Channel, OrderStatus, RequestType, Severity, minute
from .orders import OrderRequest

__all__ = ["main", "parse_order_id"]


def parse_order_id(text: str) -> int:
    """``WO-000042`` or ``42`` → 42."""
    digits = text[3:] if text.upper().startswith("WO-") else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not an order id: {text!r}")
    return int(digits)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vitalcore.service",
                                description="vitalcore maintenance work orders")
    p.add_argument("--store", required=True, help="SQLite path or PostgreSQL conninfo")
    p.add_argument("--actor", default="", help="the clinical user acting")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="open an order (phone intake)")
    c.add_argument("--device", required=True, help="device id, 16 hex digits")
    c.add_argument("--description", required=True)
    c.add_argument("--contact", required=True)
    c.add_argument("--type", default=RequestType.EMERGENCY_REPAIR.value,
                   choices=[t.value for t in RequestType])
    c.add_argument("--severity", default=Severity.GENERAL.value,
                   choices=[s.value for s in Severity])
    c.add_argument("--emergency", action="store_true")
    c.add_argument("--ward")
    c.add_argument("--floor", default="")
    c.add_argument("--room", default="")
    c.add_argument("--photo", action="append", default=[], type=Path)
    ls = sub.add_parser("list", help="list orders, newest first")
    ls.add_argument("--status", action="append", choices=[s.value for s in OrderStatus])
    ls.add_argument("--device")
    ls.add_argument("--ward")
    sh = sub.add_parser("show", help="one order with its clocks and timeline")
    sh.add_argument("order", type=parse_order_id)
    st = sub.add_parser("step", help="advance an order")
    st.add_argument("order", type=parse_order_id)
    st.add_argument("action", choices=["respond", "start", "fixed", "verify", "sign-off",
                                       "close", "cancel", "notified"])
    st.add_argument("--note", default="")
    st.add_argument("--reference", help="function-test reference (verify)")
    st.add_argument("--failed", action="store_true", help="the function test failed")
    st.add_argument("--remote", action="store_true", help="work started remotely")
    rp = sub.add_parser("report", help="monthly KPI report")
    rp.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    rp.add_argument("--html", type=Path)
    rp.add_argument("--pdf", type=Path)
    sub.add_parser("tick", help="escalate breached SLA clocks, warn of expiring vendors")
    return p


def _step(desk: ServiceDesk, a: argparse.Namespace):
    actor, oid, note = a.actor, a.order, a.note
    if a.action == "respond":
        return desk.respond(actor, oid, note)
    if a.action == "start":
        return desk.start_work(actor, oid, remote=a.remote, note=note)
    if a.action == "fixed":
        return desk.mark_fixed(actor, oid, note)
    if a.action == "verify":
        if not a.reference:
            raise UsageError("verify needs --reference")
        return desk.verify(actor, oid, not a.failed, a.reference, note)
    if a.action == "sign-off":
        return desk.sign_off(actor, oid, note)
    if a.action == "close":
        return desk.close(actor, oid, note)
    if a.action == "notified":
        return desk.mark_notified(actor, oid, note)
    return desk.cancel(actor, oid, note)


def _run(desk: ServiceDesk, a: argparse.Namespace) -> object:
    if a.cmd == "create":
        req = OrderRequest(
            device_id=parse_device_id(a.device), description=a.description, contact=a.contact,
            request_type=a.type, severity=a.severity, emergency=a.emergency, ward_id=a.ward,
            floor=a.floor, room=a.room, photos=tuple(p.read_bytes() for p in a.photo))
        return order_to_json(desk.create_order(a.actor, req, channel=Channel.CLI))
    if a.cmd == "list":
        dev = None if a.device is None else parse_device_id(a.device)
        return [order_to_json(o) for o in desk.orders(status=a.status, device_id=dev,
                                                      ward_id=a.ward)]
    if a.cmd == "show":
        o = desk.order(a.order)
        return {**order_to_json(o),
                "clocks": [{"milestone": v.milestone.value, "deadline": minute(v.deadline_us),
                            "state": v.state.value, "remaining_s": v.remaining_s}
                           for v in desk.clocks(o)],
                "timeline": [{"at": minute(e.at_us), "actor": e.actor, "kind": e.kind,
                              "note": e.note} for e in desk.order_events(o.order_id)]}
    if a.cmd == "step":
        return order_to_json(_step(desk, a))
    if a.cmd == "report":
        try:
            year, month = (int(x) for x in a.month.split("-"))
        except ValueError:
            raise UsageError(f"--month must be YYYY-MM, got {a.month!r}") from None
        report = desk.monthly_kpis(year, month)
        from .report import render_html, render_pdf

        if a.html:
            a.html.write_text(render_html(report), encoding="utf-8")
        if a.pdf:
            a.pdf.write_bytes(render_pdf(report))
        return {"orders": report.n_orders, "response_compliance_pct":
                report.response_compliance_pct, "fix_rate_pct": report.fix_rate_pct,
                "ttr_median_min": report.ttr_median_min}
    return [n.to_json() for n in desk.tick()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (0 ok, 2 bad input/refused, 3 access denied)."""
    a = _parser().parse_args(argv)
    try:
        store = open_store(a.store)
    except (VitalcoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        out = _run(ServiceDesk(store.db), a)
    except AccessDenied as exc:
        print(f"access denied: {exc}", file=sys.stderr)
        return 3
    except (VitalcoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0
