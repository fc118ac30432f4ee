"""Routes of the work-order app.

HTML: ``/`` order list with SLA clocks, ``/orders/new`` the intake form (photos
included), ``/orders/{id}`` detail with clocks, timeline, photos and the next steps,
``/vendor`` the vendor portal, ``/vendor/devices/{hex}`` a device's archive,
``/report?month=YYYY-MM[&format=pdf]`` the monthly report.

JSON: ``GET/POST /api/orders``, ``GET /api/orders/{id}``, ``POST /api/orders/{id}/steps``
(``{"action": "respond", "note": "..."}``).

Users log in with HTTP Basic against the clinical store (scrypt in an executor thread);
every action is checked and audited by the desk. The desk's calls are quick SQLite
transactions made on the event loop (the desk's clock arms its timers there).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from vitalcore.clinical import ClinicalStore, DeviceState
from vitalcore.errors import AccessDenied, UsageError
from vitalcore.server.auth import LoginLimiter
from vitalcore.service import (
    ClockState,
    Milestone,
    OrderRequest,
    OrderStatus,
    RequestType,
    ServiceDesk,
    Severity,
    minute,
    order_to_json,
    render_html,
    render_pdf,
    request_from_json,
)
from vitalcore.service.jsonio import parse_device_id
from vitalcore.service.kpi import month_bounds

__all__ = ["make_app", "STEPS"]

HERE = Path(__file__).parent
_LOGIN_CACHE_S = 300.0
_MAX_BODY = 40 << 20

#: form/API action → (desk method, needs a note, label)
STEPS = {
    "respond": ("respond", False, "Respond"),
    "start": ("start_work", False, "Start on site"),
    "remote": ("start_work", False, "Start remotely"),
    "fixed": ("mark_fixed", True, "Mark fixed"),
    "verify_passed": ("verify", False, "Function test passed"),
    "verify_failed": ("verify", False, "Function test failed"),
    "sign_off": ("sign_off", False, "Ward sign-off"),
    "close": ("close", False, "Close"),
    "notified": ("mark_notified", True, "Mark notified"),
}
_NEXT = {OrderStatus.OPEN: ("respond", "notified"), OrderStatus.RESPONDED: ("start", "remote"),
         OrderStatus.IN_PROGRESS: ("fixed",),
         OrderStatus.FIXED: ("verify_passed", "verify_failed"),
         OrderStatus.VERIFIED: ("sign_off", "close")}

STORE: web.AppKey[ClinicalStore] = web.AppKey("store", ClinicalStore)
DESK: web.AppKey[ServiceDesk] = web.AppKey("desk", ServiceDesk)
ENV: web.AppKey[jinja2.Environment] = web.AppKey("env", jinja2.Environment)
LOGINS: web.AppKey[dict] = web.AppKey("logins", dict)
LIMITER: web.AppKey[LoginLimiter] = web.AppKey("limiter", LoginLimiter)


def _fmt_remaining(s: int) -> str:
    sign, s = ("-" if s < 0 else ""), abs(s)
    if s >= 3600:
        return f"{sign}{s // 3600}:{s % 3600 // 60:02d}"
    return f"{sign}{s // 60} min" if s >= 60 else f"{sign}<1 min"


def _visible(request: web.Request, order) -> None:
    """A vendor user sees only the orders of the devices entrusted to its vendor now."""
    desk, user = request.app[DESK], request["user"]
    if desk.vendor_of(user) is not None and order.order_id not in {
            o.order_id for o in desk.vendor_orders(user)}:
        raise AccessDenied(user, "view_work_order", f"order:{order.order_id}",
                           "not an order of a device entrusted to your vendor")


def _orders_for(request: web.Request, status) -> list:
    desk, user = request.app[DESK], request["user"]
    if desk.vendor_of(user) is not None:
        return [o for o in desk.vendor_orders(user)
                if status is None or o.status.value in status]
    return desk.orders(status=status, limit=500)


def _clock_rows(desk: ServiceDesk, order) -> list[dict[str, Any]]:
    return [{"name": v.milestone.value.replace("_", " "), "state": v.state.value,
             "deadline": minute(v.deadline_us), "done": minute(v.done_us),
             "remaining": _fmt_remaining(v.remaining_s)} for v in desk.clocks(order)]


def _next_clock(desk: ServiceDesk, order) -> dict[str, Any] | None:
    for v in desk.clocks(order):
        if v.state in (ClockState.RUNNING, ClockState.BREACHED):
            return {"name": v.milestone.value.replace("_", " "), "state": v.state.value,
                    "remaining": _fmt_remaining(v.remaining_s)}
    return None


@web.middleware
async def _auth(request: web.Request, handler):
    header = request.headers.get("Authorization", "")
    user = None
    if header.startswith("Basic "):
        try:
            name, _, pw = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, pw = "", ""
        key = (name, hashlib.sha256(pw.encode()).hexdigest())
        logins = request.app[LOGINS]
        if logins.get(key, 0) > time.monotonic():
            user = name
        elif name and pw:
            ok = await _check_login(request, name, pw)
            if ok:
                logins[key] = time.monotonic() + _LOGIN_CACHE_S
                user = name
    if user is None:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="work orders"'},
                                   text="log in with your hospital account")
    request["user"] = user
    api = request.path.startswith("/api/")
    try:
        return await handler(request)
    except AccessDenied as exc:
        return _error(request, 403, str(exc), api)
    except UsageError as exc:
        return _error(request, 400, str(exc), api)


async def _check_login(request: web.Request, name: str, pw: str) -> bool:
    """The password check, under the failed-login limit of the client's address (429)."""
    store, loop = request.app[STORE], asyncio.get_running_loop()
    async with request.app[LIMITER].attempt(request.remote or "?") as attempt:
        if not attempt.admitted:
            raise web.HTTPTooManyRequests(headers={"Retry-After": "60"},
                                          text="too many failed logins: wait a minute")
        return bool(await attempt.check(
            loop.run_in_executor(None, store.verify_login, name, pw)))


def _error(request: web.Request, status: int, message: str, api: bool) -> web.Response:
    if api:
        return web.json_response({"error": message}, status=status)
    return _page(request, "error.html.j2", status=status, message=message)


def _page(request: web.Request, name: str, status: int = 200, **ctx) -> web.Response:
    desk = request.app[DESK]
    text = request.app[ENV].get_template(name).render(
        user=request["user"], vendor=desk.vendor_of(request["user"]), **ctx)
    return web.Response(text=text, content_type="text/html", status=status)


def _order_id(request: web.Request) -> int:
    raw = request.match_info["order_id"]
    if not raw.isdigit():
        raise UsageError(f"not an order id: {raw!r}")
    return int(raw)


# -- HTML --------------------------------------------------------------------------------------
async def order_list(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    if desk.vendor_of(request["user"]) is not None:
        raise web.HTTPSeeOther("/vendor")
    status = request.query.getall("status", None)
    orders = _orders_for(request, status)
    rows = [{"o": o, "reported": minute(o.reported_us), "next": _next_clock(desk, o)}
            for o in orders]
    return _page(request, "list.html.j2", rows=rows, statuses=[s.value for s in OrderStatus],
                 chosen=status or [])


def _devices(store: ClinicalStore) -> list[str]:
    return sorted(f"{d:016x}" for s in DeviceState for d in store.devices_in_state(s))


async def new_form(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return _page(request, "new.html.j2", devices=_devices(store), wards=store.wards(),
                 types=[t.value for t in RequestType], severities=[s.value for s in Severity])


async def new_submit(request: web.Request) -> web.Response:
    form = await request.post()
    photos = tuple(f.file.read() for f in form.getall("photos", [])
                   if isinstance(f, web.FileField) and f.filename)
    req = OrderRequest(
        device_id=parse_device_id(str(form.get("device_id", ""))),
        description=str(form.get("description", "")), contact=str(form.get("contact", "")),
        request_type=str(form.get("request_type", "emergency_repair")),
        severity=str(form.get("severity", "general")), emergency=form.get("emergency") == "on",
        ward_id=str(form.get("ward_id")) or None, floor=str(form.get("floor", "")),
        room=str(form.get("room", "")), photos=photos)
    order = request.app[DESK].create_order(request["user"], req, channel="web")
    raise web.HTTPSeeOther(f"/orders/{order.order_id}")


async def order_detail(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    order = desk.order(_order_id(request))
    _visible(request, order)
    steps = [(a, STEPS[a][1], STEPS[a][2]) for a in _NEXT.get(order.status, ())]
    return _page(request, "detail.html.j2", o=order, clocks=_clock_rows(desk, order),
                 events=[(minute(e.at_us), e.actor, e.kind, e.note)
                         for e in desk.order_events(order.order_id)],
                 photos=desk.photos(order.order_id), steps=steps, minute=minute,
                 escalations=desk.escalations(order.order_id))


async def photo(request: web.Request) -> web.Response:
    oid = _order_id(request)
    _visible(request, request.app[DESK].order(oid))
    media, data = request.app[DESK].photo_data(oid, int(request.match_info["photo_id"]))
    return web.Response(body=data, content_type=media)


def _do_step(desk: ServiceDesk, user: str, order_id: int, action: str, note: str,
             reference: str) -> Any:
    if action not in STEPS:
        raise UsageError(f"unknown action {action!r}; actions: {sorted(STEPS)}")
    method, _, _ = STEPS[action]
    fn = getattr(desk, method)
    if action == "remote":
        return fn(user, order_id, remote=True, note=note)
    if action.startswith("verify"):
        return fn(user, order_id, action == "verify_passed", reference or "-", note)
    if method in ("mark_fixed", "mark_notified"):
        return fn(user, order_id, note)
    return fn(user, order_id, note=note)


async def step_submit(request: web.Request) -> web.Response:
    form = await request.post()
    oid = _order_id(request)
    _do_step(request.app[DESK], request["user"], oid, str(form.get("action", "")),
             str(form.get("note", "")), str(form.get("reference", "")))
    raise web.HTTPSeeOther(f"/orders/{oid}")


async def vendor_portal(request: web.Request) -> web.Response:
    desk, user = request.app[DESK], request["user"]
    vendor = desk.vendor_of(user)
    if vendor is None:
        raise UsageError("the vendor portal is for users who act for a service vendor")
    now = desk.now_us()
    assoc = [{"a": a, "device": f"{a.device_id:016x}", "from": minute(a.valid_from_us),
              "until": minute(a.valid_until_us), "active": a.active_at(now),
              "days_left": max(0, (a.valid_until_us - now) // 86_400_000_000),
              "scopes": ", ".join(sorted(a.scopes))}
             for a in desk.associations(vendor_id=vendor)]
    orders = [{"o": o, "reported": minute(o.reported_us), "next": _next_clock(desk, o)}
              for o in desk.vendor_orders(user)]
    return _page(request, "vendor.html.j2", v=desk.vendor(vendor), assoc=assoc, rows=orders)


async def vendor_device(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    arch = desk.device_archive(request["user"], parse_device_id(request.match_info["hex"]))
    return _page(request, "archive.html.j2", arch=arch, minute=minute)


async def report(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    month = request.query.get("month") or time.strftime("%Y-%m", time.gmtime())
    try:
        year, mon = (int(x) for x in month.split("-"))
    except ValueError:
        raise UsageError(f"month must be YYYY-MM, got {month!r}") from None
    month_bounds(year, mon)
    kpis = desk.monthly_kpis(year, mon)
    if request.query.get("format") == "pdf":
        pdf = await asyncio.get_running_loop().run_in_executor(None, render_pdf, kpis)
        return web.Response(body=pdf, content_type="application/pdf")
    return web.Response(text=render_html(kpis), content_type="text/html")


# -- JSON --------------------------------------------------------------------------------------
def _order_json(desk: ServiceDesk, order) -> dict[str, Any]:
    return {**order_to_json(order),
            "clocks": {v.milestone.value: {"state": v.state.value, "deadline_us": v.deadline_us,
                                           "remaining_s": v.remaining_s}
                       for v in desk.clocks(order)},
            "timeline": [{"at_us": e.at_us, "at": minute(e.at_us), "actor": e.actor,
                          "kind": e.kind, "note": e.note}
                         for e in desk.order_events(order.order_id)]}


async def api_list(request: web.Request) -> web.Response:
    orders = _orders_for(request, request.query.getall("status", None))
    return web.json_response([order_to_json(o) for o in orders])


async def api_create(request: web.Request) -> web.Response:
    body = await request.read()
    order = request.app[DESK].create_order(request["user"], request_from_json(body),
                                           channel="api")
    return web.json_response(_order_json(request.app[DESK], order), status=201)


async def api_order(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    order = desk.order(_order_id(request))
    _visible(request, order)
    return web.json_response(_order_json(desk, order))


async def api_step(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        raise UsageError("body must be JSON") from None
    if not isinstance(body, dict):
        raise UsageError("body must be a JSON object")
    desk = request.app[DESK]
    order = _do_step(desk, request["user"], _order_id(request), str(body.get("action", "")),
                     str(body.get("note", "")), str(body.get("reference", "")))
    return web.json_response(_order_json(desk, order))


def make_app(store: ClinicalStore, desk: ServiceDesk,
             limiter: LoginLimiter | None = None) -> web.Application:
    """The web application over ``store`` and ``desk`` (share one database); failed
    logins are limited per address by ``limiter`` (default: burst 10, 1 per 2 s)."""
    app = web.Application(middlewares=[_auth], client_max_size=_MAX_BODY)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals.update(Milestone=Milestone)
    app[STORE], app[DESK], app[ENV], app[LOGINS] = store, desk, env, {}
    app[LIMITER] = limiter or LoginLimiter(burst=10, rate_per_s=0.5)
    app.router.add_get("/", order_list)
    app.router.add_get("/orders/new", new_form)
    app.router.add_post("/orders/new", new_submit)
    app.router.add_get("/orders/{order_id}", order_detail)
    app.router.add_post("/orders/{order_id}/step", step_submit)
    app.router.add_get("/orders/{order_id}/photos/{photo_id:[0-9]+}", photo)
    app.router.add_get("/vendor", vendor_portal)
    app.router.add_get("/vendor/devices/{hex}", vendor_device)
    app.router.add_get("/report", report)
    app.router.add_get("/api/orders", api_list)
    app.router.add_post("/api/orders", api_create)
    app.router.add_get("/api/orders/{order_id}", api_order)
    app.router.add_post("/api/orders/{order_id}/steps", api_step)
    app.router.add_static("/static", HERE / "static")
    return app
