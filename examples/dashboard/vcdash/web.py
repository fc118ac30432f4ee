"""The aiohttp application: login, pages, JSON actions and the live WebSocket.

Every handler resolves the session cookie first; pages redirect an expired session to
the login page (saying so), JSON and WebSocket answer 401 / close code 4401. Scope is
checked server-side on each page, action and WebSocket (``read_vitals`` on the ward,
patient or device through :meth:`ClinicalStore.authorize`, audited): a ward outside the
user's scope is a 403 page, a WebSocket for it closes with 4403, and the live feed of a
WebSocket only ever carries the devices of its view that the user may read.

WebSocket messages (server to browser):

- binary: decimated waveforms, :mod:`vitalcore.live.wire` (one message per 250 ms flush);
- text, msgspec JSON: ``hello`` (the view's tiles), ``snap`` once a second (numerics,
  device status, active alarms, BP rounds, next scheduled NIBP, session time left),
  ``bye`` before a close the server initiates (reason in words).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import jinja2
import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from vitalcore import protocol as P
from vitalcore.clinical import Permission, Resource
from vitalcore.dsp.nibp import NIBP_REASONS
from vitalcore.errors import AccessDenied, UsageError, VitalcoreError
from vitalcore.server import LoginLimiter

from .roster import Roster, Tile, Visible, visible
from .sessions import COOKIE, Session, Sessions
from .system import LiveSystem

__all__ = ["create_app", "DashState", "WS_EXPIRED", "WS_FORBIDDEN"]

log = logging.getLogger("vcdash")

HERE = Path(__file__).parent
WS_EXPIRED = 4401  #: WebSocket close code: no valid session (expired, logged out)
WS_FORBIDDEN = 4403  #: WebSocket close code: the view is outside the user's scope
STALE_S = 10.0  #: a device with no numerics for this long is shown offline
_N = P.NumericCode
_enc = msgspec.json.Encoder()


class DashState:
    """What the app shares: the live system, sessions, roster, per-client statistics."""

    def __init__(self, system: LiveSystem, sessions: Sessions) -> None:
        self.system = system
        self.sessions = sessions
        self.roster = Roster(system)
        self.limiter = LoginLimiter(burst=10, rate_per_s=0.5)
        self.clients: dict[int, dict] = {}  # id -> {user, view, bytes, since, ...}
        self._next_client = 1
        self.scope_cache_s = 15.0  #: a user's visible wards are re-checked this often, s
        self._alarm_waiters: set[asyncio.Event] = set()
        self._loop = asyncio.get_running_loop()
        system.engine.add_listener(self._on_alarm)  # engine thread

    def _on_alarm(self, _event) -> None:
        """An alarm changed: wake every WebSocket's snapshot task (from the engine thread)."""
        try:
            self._loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:  # loop closed: nobody is listening any more
            pass

    def _wake_all(self) -> None:
        for ev in self._alarm_waiters:
            ev.set()


STATE = web.AppKey("state", DashState)
JINJA = web.AppKey("jinja", jinja2.Environment)


# -- helpers ----------------------------------------------------------------------------------
def _session(request: web.Request, touch: bool = True) -> Session | None:
    return request.app[STATE].sessions.get(request.cookies.get(COOKIE), touch=touch)


def _render(request: web.Request, name: str, status: int = 200, **ctx) -> web.Response:
    env = request.app[JINJA]
    html = env.get_template(name).render(**ctx)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def page(fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]):
    """A page handler: a valid session or a redirect to the login page."""
    async def handler(request: web.Request) -> web.StreamResponse:
        s = _session(request)
        if s is None:
            expired = COOKIE in request.cookies
            nxt = request.path_qs
            raise web.HTTPFound(f"/login?next={quote(nxt, safe='/')}"
                                + ("&expired=1" if expired else ""))
        return await fn(request, s)
    return handler


def api(fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]):
    """A JSON handler: 401 without a session, 403 on a bad CSRF token or AccessDenied."""
    async def handler(request: web.Request) -> web.StreamResponse:
        s = _session(request)
        if s is None:
            return web.json_response({"error": "session expired: log in again"}, status=401)
        if request.method == "POST" and request.headers.get("X-CSRF") != s.csrf:
            return web.json_response({"error": "missing or bad CSRF token"}, status=403)
        try:
            return await fn(request, s)
        except AccessDenied as exc:
            return web.json_response({"error": f"not allowed: {exc}"}, status=403)
        except UsageError as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return handler


async def _body(request: web.Request) -> dict:
    """The request's JSON object; UsageError (a 400) for anything else."""
    try:
        body = await request.json()
    except ValueError:
        raise UsageError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    return body


def _visible(request: web.Request, s: Session) -> Visible:
    st = request.app[STATE]
    return visible(st.system, st.roster, s.user, s.cache, st.scope_cache_s)


def _forbidden(request: web.Request, s: Session, what: str) -> web.Response:
    return _render(request, "error.html", status=403, user=s.user, csrf=s.csrf,
                   title="Not in your scope",
                   message=f"{what} is outside what {s.user} may see. The attempt was "
                           "recorded in the audit log.")


def _tiles_for(st: DashState, v: Visible, view: str, ident: str | None) -> list[Tile] | None:
    """The tiles of a view the user may see; None if the view is outside their scope."""
    st.roster.refresh()
    if view == "ward":
        if ident not in v.wards:
            return None
        return list(st.roster.wards.get(ident, []))
    if view == "central":
        out = [t for w in v.wards for t in st.roster.wards.get(w, [])]
        return out + list(v.transport)
    if view == "patient":
        tile = st.roster.patient(ident or "")
        if tile is None:
            return None
        if tile.ward_id is not None and tile.ward_id in v.wards:
            return [tile]
        if any(t.patient_id == tile.patient_id for t in v.transport):
            return [tile]
        return None
    return None


# -- login ---------------------------------------------------------------------------------------
async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html", next=_safe_next(request.query.get("next", "/")),
                   expired=request.query.get("expired") == "1", error="")


def _safe_next(nxt: str) -> str:
    """A local path to go to after login (never another site: no //host, no backslash)."""
    ok = nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt
    return nxt if ok and len(nxt) < 2000 else "/"


async def login_post(request: web.Request) -> web.Response:
    st = request.app[STATE]
    form = await request.post()
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    ok = False
    if user and password and len(user) <= 128 and len(password) <= 1024:
        async with st.limiter.attempt(request.remote or "?") as attempt:
            if not attempt.admitted:
                return _render(request, "login.html", status=429, next=nxt, expired=False,
                               error="Too many attempts: wait a minute.")
            loop = asyncio.get_running_loop()
            try:  # scrypt: off the event loop; a wrong password takes a token
                ok = await attempt.check(loop.run_in_executor(
                    None, st.system.clinical.verify_login, user, password))
            except VitalcoreError:
                ok = False
    if not ok:
        return _render(request, "login.html", status=401, next=nxt, expired=False,
                       error="Unknown user or wrong password.")
    s = st.sessions.create(user)
    resp = web.HTTPFound(nxt)
    resp.set_cookie(COOKIE, s.token, httponly=True, samesite="Strict", path="/")
    raise resp


async def logout(request: web.Request) -> web.Response:
    st = request.app[STATE]
    token = request.cookies.get(COOKIE)
    s = st.sessions.get(token, touch=False)
    form = await request.post()
    if s is not None and form.get("csrf") == s.csrf:
        st.sessions.revoke(s.token)
    resp = web.HTTPFound("/login")
    resp.del_cookie(COOKIE, path="/")
    raise resp


# -- pages -----------------------------------------------------------------------------------
@page
async def home(request: web.Request, s: Session) -> web.Response:
    v = _visible(request, s)
    if len(v.wards) == 1 and not v.transport:
        raise web.HTTPFound(f"/ward/{v.wards[0]}")
    if not v.empty:
        raise web.HTTPFound("/central")
    return _render(request, "error.html", status=403, user=s.user, csrf=s.csrf,
                   title="No patients in your scope",
                   message=f"{s.user} has no role that may read vital signs here.")


def _shell(request: web.Request, s: Session, view: str, ident: str, title: str, v: Visible):
    st = request.app[STATE]
    names = st.system.hospital.ward_names
    return _render(request, "live.html", user=s.user, csrf=s.csrf, view=view, ident=ident,
                   title=title, wards=[(w, names[w]) for w in v.wards])


@page
async def ward_page(request: web.Request, s: Session) -> web.Response:
    wid = request.match_info["ward"]
    st = request.app[STATE]
    if wid not in st.system.hospital.ward_names:
        raise web.HTTPNotFound(text=f"no ward {wid!r}")
    v = _visible(request, s)
    if wid not in v.wards:
        with contextlib.suppress(VitalcoreError):  # the audited denial
            st.system.clinical.authorize(s.user, Permission.READ_VITALS, Resource.ward(wid),
                                         action="dashboard_ward")
        return _forbidden(request, s, f"Ward {wid}")
    return _shell(request, s, "ward", wid, st.system.hospital.ward_names[wid], v)


@page
async def central_page(request: web.Request, s: Session) -> web.Response:
    v = _visible(request, s)
    if v.empty:
        return _forbidden(request, s, "Central monitoring")
    return _shell(request, s, "central", "", "Central monitoring", v)


@page
async def patient_page(request: web.Request, s: Session) -> web.Response:
    st = request.app[STATE]
    pid = request.match_info["pid"]
    v = _visible(request, s)
    tiles = _tiles_for(st, v, "patient", pid)
    if tiles is None:
        return _forbidden(request, s, f"Patient {pid}")
    return _shell(request, s, "patient", pid, f"{tiles[0].name} ({pid})", v)


# -- JSON ------------------------------------------------------------------------------------
def _device_of_alarm(system: LiveSystem, alarm_id: str):
    for a in system.engine.active_alarms():
        if a.alarm_id == alarm_id:
            return a
    return None


@api
async def ack_alarm(request: web.Request, s: Session) -> web.Response:
    st = request.app[STATE]
    alarm_id = (await _body(request)).get("alarm_id")
    if not isinstance(alarm_id, str) or len(alarm_id) > 200:
        return web.json_response({"error": "alarm_id (a string) is required"}, status=400)
    a = _device_of_alarm(st.system, alarm_id)
    if a is None:
        return web.json_response({"error": f"no active alarm {alarm_id!r}"}, status=404)
    st.system.clinical.authorize(s.user, Permission.ACK_ALARMS, Resource.device(a.device_id),
                                 action="ack_alarm")
    events = st.system.engine.acknowledge(alarm_id, s.user)
    return web.json_response({"ok": True, "events": [str(e.kind) for e in events],
                              "by": s.user, "at_ms": time.time_ns() // 1_000_000})


@api
async def measure_bp(request: web.Request, s: Session) -> web.Response:
    st = request.app[STATE]
    body = await _body(request)
    ward, pid = body.get("ward"), body.get("patient")
    cs = st.system.clinical
    if isinstance(ward, str) and ward in st.system.hospital.ward_names:
        cs.authorize(s.user, Permission.COMMAND_DEVICES, Resource.ward(ward), action="bp_ward")
        r = st.system.measure_now(s.user, ward_id=ward)
    elif isinstance(pid, str) and pid in st.system.hospital.patients:
        cs.authorize(s.user, Permission.COMMAND_DEVICES, Resource.patient(pid),
                     action="bp_patient")
        r = st.system.measure_now(s.user, patient_id=pid)
    else:
        return web.json_response({"error": "give a known 'ward' or 'patient'"}, status=400)
    p = r.round.progress()
    return web.json_response({"round": r.round_id, "total": p.total})


def _minute_means(ts, codes, values, code: int) -> list:
    import numpy as np
    m = (codes == code) & np.isfinite(values)
    if not m.any():
        return []
    minute = ts[m] // 60_000_000
    keys, inv = np.unique(minute, return_inverse=True)
    sums = np.bincount(inv, values[m])
    cnt = np.bincount(inv)
    return [[int(k) * 60_000, round(float(v), 1)] for k, v in zip(keys, sums / cnt, strict=True)]


@api
async def patient_history(request: web.Request, s: Session) -> web.Response:
    """24 h trend (1-minute means), NIBP readings and alarm history of a patient."""
    st = request.app[STATE]
    pid = request.match_info["pid"]
    if pid not in st.system.hospital.patients:
        return web.json_response({"error": f"no patient {pid!r}"}, status=404)
    t1 = time.time_ns() // 1000 + 1_000_000
    t0 = t1 - 24 * 3600 * 1_000_000
    spans = st.system.clinical.device_spans(pid, t0, t1, user=s.user)  # audited check
    rec = st.system.records
    num = rec.numerics(spans, t0, t1)
    ts = num.column("ts_us").to_numpy()
    codes = num.column("code").to_numpy()
    vals = num.column("value").to_numpy().astype(float)
    trend = {name: _minute_means(ts, codes, vals, int(code)) for name, code in
             (("hr", _N.HR), ("spo2", _N.SPO2), ("pr", _N.PR), ("sys", _N.NIBP_SYS),
              ("dia", _N.NIBP_DIA))}
    alarms = rec.alarms(spans, t0, t1).to_pylist()
    keep = ("ts_us", "kind", "alarm_id", "code", "priority", "message", "user")
    hist = [{k: (a.get(k) if not isinstance(a.get(k), float) or math.isfinite(a.get(k))
                 else None) for k in keep if k in a} for a in alarms[-500:]]
    return web.json_response({"trend": trend, "alarms": hist})


@page
async def abpm_page(request: web.Request, s: Session) -> web.Response:
    """The ambulatory BP report (vitalcore.clinical.report) of the patient's stay."""
    from vitalcore.clinical import abpm_report
    from vitalcore.clinical.report import ReportHeader, render_html

    st = request.app[STATE]
    pid = request.match_info["pid"]
    tile = st.roster.patient(pid)
    if tile is None:
        raise web.HTTPNotFound(text=f"no patient {pid!r} admitted")
    t1 = time.time_ns() // 1000 + 1_000_000
    t0 = t1 - 24 * 3600 * 1_000_000
    try:
        spans = st.system.clinical.device_spans(pid, t0, t1, user=s.user)
    except AccessDenied:
        return _forbidden(request, s, f"Patient {pid}")
    t0 = max(t0, min((sp.start_us for sp in spans), default=t0))
    num = st.system.records.numerics(spans, t0, t1)
    num = num.select([c for c in num.column_names if c not in ("patient_id", "ward_id")])
    report = abpm_report(num, "Europe/Berlin", t0_us=t0, t1_us=t1)
    html = render_html(report, ReportHeader(pid, tile.name, tile.ward_id or "transport",
                                            tile.device))
    return web.Response(text=html, content_type="text/html")


@api
async def stats(request: web.Request, s: Session) -> web.Response:
    """Per-WebSocket-client bandwidth (the benchmark reads it), fan-out counters."""
    st = request.app[STATE]
    now = time.monotonic()
    clients = [{"id": k, "view": c["view"], "bytes": c["bytes"], "wave_bytes": c["wave_bytes"],
                "seconds": round(now - c["since"], 3), "devices": c["devices"],
                "bytes_per_s": round(c["bytes"] / max(now - c["since"], 1e-3))}
               for k, c in st.clients.items() if c["user"] == s.user]
    return web.json_response({"clients": clients, "fanout": st.system.fanout.counters})


# -- the live WebSocket ----------------------------------------------------------------------
def _num(v) -> float | None:
    return None if v is None or not math.isfinite(v.value) or v.status == 2 else \
        round(v.value, 1)


def _bp_outcome(r) -> str:
    """A command's status in words (a failed NIBP with the device's reason)."""
    if r.status.value == "failed" and 0 <= r.detail < len(NIBP_REASONS):
        return f"failed: {NIBP_REASONS[r.detail]}"
    return r.status.value + (f" ({r.note})" if r.note else "")


def _snapshot(st: DashState, tiles: list[Tile], remaining_s: float) -> bytes:
    sysm = st.system
    now_us = time.time_ns() // 1000
    bufs = sysm.store.buffers
    devs = {}
    ids = set()
    for t in tiles:
        dev = int(t.device, 16)
        ids.add(dev)
        lat = bufs.latest(dev)
        hr, pr, spo2 = lat.get(_N.HR), lat.get(_N.PR), lat.get(_N.SPO2)
        nibp = [lat.get(_N.NIBP_SYS), lat.get(_N.NIBP_DIA), lat.get(_N.NIBP_MAP)]
        last = max((v.ts_us for v in lat.values()), default=0)
        stt = bufs.status(dev)
        try:
            nxt = sysm.scheduler.status(t.patient_id).next_due_us // 1000
        except UsageError:
            nxt = None
        devs[t.device] = {
            "hr": _num(hr), "pr": _num(pr), "spo2": _num(spo2),
            "nibp": ([_num(nibp[0]), _num(nibp[1]), _num(nibp[2]), nibp[0].ts_us // 1000]
                     if nibp[0] is not None else None),
            "bat": None if stt is None or stt.battery == 255 else stt.battery,
            "flags": 0 if stt is None else stt.flags,
            "leads": 0 if stt is None else stt.leads_off,
            "rssi": None if stt is None or stt.rssi == -128 else stt.rssi,
            "online": bool(last) and now_us - last < STALE_S * 1e6,
            "next_bp": nxt,
        }
    alarms = [{"id": a.alarm_id, "dev": f"{a.device_id:016x}", "code": a.code,
               "prio": int(a.priority), "state": str(a.state), "msg": a.message,
               "raised": a.raised_us // 1000, "by": a.acked_by,
               "acked": a.acked_us // 1000 if a.acked_us else None}
              for a in sysm.engine.active_alarms() if a.device_id in ids]
    pids = {t.patient_id for t in tiles}
    wards = {t.ward_id for t in tiles}
    rounds = []
    for r in sysm.rounds.values():
        if (r.ward_id is not None and r.ward_id in wards) or r.patient_id in pids:
            p = r.round.progress()
            res = {f"{x.device_id:016x}": _bp_outcome(x) for x in r.round.results}
            rounds.append({"id": r.round_id, "ward": r.ward_id, "pid": r.patient_id,
                           "by": r.by, "total": p.total, "done": p.done,
                           "ok": p.succeeded, "started": r.started_us // 1000, "res": res})
    return _enc.encode({"t": "snap", "now": now_us // 1000, "devs": devs, "alarms": alarms,
                        "rounds": rounds[-20:], "session_s": round(remaining_s)})


async def live_ws(request: web.Request) -> web.WebSocketResponse:
    st = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False)
    await ws.prepare(request)
    s = _session(request, touch=False)
    if s is None:
        await ws.send_str(_enc.encode({"t": "bye", "why": "expired"}).decode())
        await ws.close(code=WS_EXPIRED, message=b"session expired")
        return ws
    view, ident = request.query.get("view", ""), request.query.get("id") or None
    tiles = _tiles_for(st, _visible(request, s), view, ident)
    if tiles is None:
        await ws.send_str(_enc.encode({"t": "bye", "why": "forbidden"}).decode())
        await ws.close(code=WS_FORBIDDEN, message=b"outside your scope")
        return ws
    cid = st._next_client
    st._next_client += 1
    info = st.clients[cid] = {"user": s.user, "view": view, "bytes": 0, "wave_bytes": 0,
                              "since": time.monotonic(), "devices": len(tiles)}
    # the central overview draws ECG only: no pleth on its wire
    types = [P.FrameType.ECG] if view == "central" else None
    sub = st.system.fanout.subscribe([int(t.device, 16) for t in tiles], maxsize=16,
                                     frame_types=types)

    async def send_text(doc: bytes) -> None:
        info["bytes"] += len(doc)
        await ws.send_str(doc.decode())

    async def waves() -> None:
        while (msg := await sub.get()) is not None:
            info["bytes"] += len(msg)
            info["wave_bytes"] += len(msg)
            await ws.send_bytes(msg)

    async def snaps() -> None:
        nonlocal tiles
        names = st.system.hospital.ward_names
        await send_text(_enc.encode({"t": "hello", "view": view, "id": ident, "user": s.user,
                                     "csrf": s.csrf, "wards": names,
                                     "tiles": [t.as_json() for t in tiles]}))
        while True:
            live = st.sessions.get(s.token, touch=False)
            if live is None:
                await send_text(_enc.encode({"t": "bye", "why": "expired"}))
                await ws.close(code=WS_EXPIRED, message=b"session expired")
                return
            now_tiles = _tiles_for(st, _visible(request, s), view, ident)
            if now_tiles is None:
                await send_text(_enc.encode({"t": "bye", "why": "forbidden"}))
                await ws.close(code=WS_FORBIDDEN, message=b"outside your scope")
                return
            if now_tiles != tiles:  # admissions, transfers, transport, revoked scope
                tiles = now_tiles
                sub.set_devices([int(t.device, 16) for t in tiles])
                info["devices"] = len(tiles)
                await send_text(_enc.encode({"t": "hello", "view": view, "id": ident,
                                             "user": s.user, "csrf": s.csrf, "wards": names,
                                             "tiles": [t.as_json() for t in tiles]}))
            await send_text(_snapshot(st, tiles, st.sessions.remaining_s(live)))
            wake.clear()
            await asyncio.sleep(0.2)  # at most 5 snapshots/s however many alarm events
            with contextlib.suppress(TimeoutError):  # 1/s, or at once on an alarm event
                await asyncio.wait_for(wake.wait(), 0.8)

    wake = asyncio.Event()
    st._alarm_waiters.add(wake)
    tasks = [asyncio.create_task(waves()), asyncio.create_task(snaps())]
    try:
        async for msg in ws:  # the browser sends nothing we act on; reading keeps pings going
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        sub.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        st.clients.pop(cid, None)
        st._alarm_waiters.discard(wake)
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws


# -- the app -----------------------------------------------------------------------------------
@web.middleware
async def security_headers(request: web.Request, handler):
    resp = await handler(request)
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self' "
                            "'unsafe-inline'; connect-src 'self'")
    return resp


def create_app(system: LiveSystem, sessions: Sessions | None = None) -> web.Application:
    """The dashboard as an aiohttp application on a started :class:`LiveSystem`.

    ``sessions`` may be shared with a previous app (a web restart keeps logins).
    """
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[STATE] = DashState(system, sessions or Sessions())
    app[JINJA] = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=True)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_post)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", home)
    app.router.add_get("/central", central_page)
    app.router.add_get("/ward/{ward}", ward_page)
    app.router.add_get("/patient/{pid}", patient_page)
    app.router.add_get("/patient/{pid}/abpm", abpm_page)
    app.router.add_get("/api/patient/{pid}/history", patient_history)
    app.router.add_post("/api/alarms/ack", ack_alarm)
    app.router.add_post("/api/bp", measure_bp)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/ws", live_ws)
    app.router.add_static("/static", HERE / "static")
    return app
