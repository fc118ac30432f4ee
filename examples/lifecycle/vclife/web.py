"""The aiohttp application: due list, statistics, drill-down, usage, exports, JSON API.

Every request logs in with HTTP Basic against the clinical users
(:meth:`ClinicalStore.verify_login`, in an executor: scrypt is CPU-bound). The fleet
pages need ``view_device_archive`` on the global scope (checked and audited through
:meth:`ClinicalStore.authorize`); a device drill-down is checked on the device itself by
:meth:`FleetTracker.drill_down`. Database calls run in the loop's default executor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import BasicAuth, web

from vitalcore.clinical import ClinicalStore, Permission, Resource
from vitalcore.errors import AccessDenied, UsageError
from vitalcore.fleet import FleetTracker
from vitalcore.fleet.export import (
    ASSET_COLUMNS,
    DUE_COLUMNS,
    USAGE_COLUMNS,
    api_payload,
    asset_record,
    due_record,
    to_csv,
    to_xlsx,
    usage_record,
)
from vitalcore.server.auth import LoginLimiter

__all__ = ["create_app", "STORE", "TRACKER"]

STORE = web.AppKey("store", ClinicalStore)
TRACKER = web.AppKey("tracker", FleetTracker)
LIMITER = web.AppKey("limiter", LoginLimiter)
_HERE = Path(__file__).parent
_REALM = 'Basic realm="vitalcore lifecycle"'


def _iso(t_us: int | None) -> str:
    if t_us is None:
        return ""
    return dt.datetime.fromtimestamp(t_us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _iso
    env.filters["dev"] = lambda d: "" if d is None else f"{d:016x}"
    env.filters["h"] = lambda x: "" if x is None else f"{x:,.1f}"
    return env


async def _call(fn, *args, **kw) -> Any:
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(fn, *args, **kw))


@web.middleware
async def _auth(request: web.Request, handler):
    """Log the request in (Basic), map our errors to HTTP answers."""
    store = request.app[STORE]
    try:
        auth = BasicAuth.decode(request.headers.get("Authorization", ""))
    except ValueError:
        auth = None
    ok = False
    if auth is not None:
        async with request.app[LIMITER].attempt(request.remote or "?") as attempt:
            if not attempt.admitted:
                raise web.HTTPTooManyRequests(headers={"Retry-After": "60"},
                                              text="too many failed logins: wait a minute")
            ok = bool(await attempt.check(_call(store.verify_login, auth.login, auth.password)))
    if not ok:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": _REALM},
                                   text="log in with a vitalcore user")
    request["user"] = auth.login
    try:
        if not request.path.startswith(("/assets/", "/terminals/")):  # drill-down: per device
            route = request.match_info.route.name or "page"
            await _call(store.authorize, auth.login, Permission.VIEW_DEVICE_ARCHIVE,
                        Resource.everything(), action=f"lifecycle_{route}")
        return await handler(request)
    except AccessDenied as exc:
        raise web.HTTPForbidden(text=str(exc)) from None
    except UsageError as exc:
        raise web.HTTPNotFound(text=str(exc)) if "unknown" in str(exc) else \
            web.HTTPBadRequest(text=str(exc)) from None


def _render(request: web.Request, name: str, **ctx: Any) -> web.Response:
    env: jinja2.Environment = request.app["env"]
    html = env.get_template(name).render(user=request["user"], **ctx)
    return web.Response(text=html, content_type="text/html")


def _window(request: web.Request) -> tuple[int, int, str, str]:
    """``[t0, t1)`` of the ``from``/``to`` months (``YYYY-MM``; default: this month)."""
    now = dt.datetime.now(dt.UTC)
    this = f"{now.year:04d}-{now.month:02d}"
    a, b = request.query.get("from", this), request.query.get("to", "")
    b = b or a
    try:
        t0 = dt.datetime.strptime(a, "%Y-%m").replace(tzinfo=dt.UTC)
        t1 = dt.datetime.strptime(b, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise UsageError(f"months are YYYY-MM, got {a!r} / {b!r}") from None
    if t1 < t0:
        raise UsageError("'to' is before 'from'")
    t1n = dt.datetime(t1.year + t1.month // 12, t1.month % 12 + 1, 1, tzinfo=dt.UTC)
    return int(t0.timestamp()) * 1_000_000, int(t1n.timestamp()) * 1_000_000, a, b


async def index(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    due = await _call(tracker.due)
    stats = await _call(tracker.statistics)
    last = await _call(tracker.last_event_id)
    events = await _call(tracker.events, max(0, last - 12))
    return _render(request, "index.html", due=due, stats=stats, events=events[::-1])


async def asset(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    detail = await _call(tracker.drill_down, request["user"], request.match_info["kind"],
                         request.match_info["serial"])
    return _render(request, "asset.html", d=detail)


async def terminal(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    try:
        device_id = int(request.match_info["device"], 16)
    except ValueError:
        raise web.HTTPBadRequest(text="device ids are hexadecimal") from None
    detail = await _call(tracker.drill_down, request["user"], "terminal", device_id=device_id)
    return _render(request, "asset.html", d=detail)


async def usage(request: web.Request) -> web.Response:
    t0, t1, a, b = _window(request)
    rows = await _call(request.app[TRACKER].usage, t0, t1)
    return _render(request, "usage.html", rows=rows, month_from=a, month_to=b,
                   total_bound=sum(r.bound_h for r in rows),
                   total_powered=sum(r.powered_h for r in rows))


async def _tables(request: web.Request) -> dict[str, tuple[list[dict], tuple[str, ...]]]:
    tracker = request.app[TRACKER]
    t0, t1, _, _ = _window(request)
    assets = await _call(tracker.assets)
    due = await _call(tracker.due)
    rows = await _call(tracker.usage, t0, t1)
    return {"assets": ([asset_record(x) for x in assets], ASSET_COLUMNS),
            "due": ([due_record(x) for x in due], DUE_COLUMNS),
            "usage": ([usage_record(x) for x in rows], USAGE_COLUMNS)}


async def export_csv(request: web.Request) -> web.Response:
    name = request.match_info["table"]
    tables = await _tables(request)
    if name not in tables:
        raise web.HTTPNotFound(text=f"no table {name!r}: one of {', '.join(tables)}")
    rows, cols = tables[name]
    return web.Response(body=to_csv(rows, cols).encode(), content_type="text/csv",
                        charset="utf-8", headers={
                            "Content-Disposition": f'attachment; filename="lifecycle-{name}.csv"'})


async def export_xlsx(request: web.Request) -> web.Response:
    tables = await _tables(request)
    body = await _call(to_xlsx, tables)
    return web.Response(body=body, content_type="application/vnd.openxmlformats-officedocument."
                        "spreadsheetml.sheet", headers={
                            "Content-Disposition": 'attachment; filename="lifecycle.xlsx"'})


async def api_lifecycle(request: web.Request) -> web.Response:
    tracker = request.app[TRACKER]
    t0, t1, _, _ = _window(request)
    doc = api_payload(await _call(tracker.assets), await _call(tracker.due),
                      await _call(tracker.statistics), await _call(tracker.usage, t0, t1),
                      generated_us=tracker._time(None))
    return web.json_response(doc, dumps=functools.partial(json.dumps, sort_keys=True))


async def api_events(request: web.Request) -> web.Response:
    try:
        since = int(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise UsageError("since and limit are integers") from None
    events = await _call(request.app[TRACKER].events, since, limit=limit)
    return web.json_response([{
        "event_id": e.event_id, "at": _iso(e.at_us), "at_us": e.at_us, "kind": e.kind.value,
        "asset_id": e.asset_id, "asset_kind": None if e.asset_kind is None else e.asset_kind.value,
        "serial": e.serial, "device_id": None if e.device_id is None else f"{e.device_id:016x}",
        "hours": e.hours, "detail": e.detail} for e in events])


def create_app(store: ClinicalStore, tracker: FleetTracker,
               limiter: LoginLimiter | None = None) -> web.Application:
    """The web application over an open clinical store and its fleet tracker; failed
    logins are limited per address by ``limiter`` (default: burst 10, 1 per 2 s)."""
    app = web.Application(middlewares=[_auth])
    app[STORE] = store
    app[TRACKER] = tracker
    app[LIMITER] = limiter or LoginLimiter(burst=10, rate_per_s=0.5)
    app["env"] = _env()
    for path, handler in (("/", index), ("/assets/{kind}/{serial}", asset),
                          ("/terminals/{device}", terminal), ("/usage", usage),
                          ("/export/lifecycle.xlsx", export_xlsx),
                          ("/export/{table}.csv", export_csv),
                          ("/api/lifecycle", api_lifecycle), ("/api/events", api_events)):
        app.router.add_get(path, handler, name=handler.__name__)
    return app
