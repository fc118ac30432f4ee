"""The dashboard's HTTP and WebSocket surface without a browser: scope, sessions, bad input."""

from __future__ import annotations

import json

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.live import decode_message


async def _client(dash, user: str | None):
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    if user is not None:
        r = await s.post(dash.url + "login", data={"user": user, "next": "/",
                                                   "password": dash.users[user]["password"]},
                         allow_redirects=False)
        assert r.status == 302, await r.text()
    return s


async def _csrf(s, dash, view="central", ident=None) -> tuple[str, dict]:
    q = f"view={view}" + (f"&id={ident}" if ident else "")
    async with s.ws_connect(dash.url + "ws?" + q) as ws:
        hello = json.loads((await ws.receive(timeout=10)).data)
    return hello["csrf"], hello


def run(dash, coro):
    return dash.loop.run(coro, timeout=60)


def test_login_failures_and_open_redirect(dashboard):
    async def main():
        async with aiohttp.ClientSession() as s:
            r = await s.post(dashboard.url + "login", data={"user": "nurse-w1",
                                                            "password": "wrong"})
            assert r.status == 401 and "wrong password" in await r.text()
            r = await s.post(dashboard.url + "login", data={"user": "x" * 5000,
                                                            "password": "y"})
            assert r.status == 401
            r = await s.get(dashboard.url + "ward/w1", allow_redirects=False)
            assert r.status == 302 and r.headers["Location"].startswith("/login?next=/ward/w1")
        s = await _client(dashboard, None)
        r = await s.post(dashboard.url + "login", allow_redirects=False,
                         data={"user": "nurse-w1", "next": "//evil.example/x",
                               "password": dashboard.users["nurse-w1"]["password"]})
        assert r.status == 302 and r.headers["Location"] == "/"
        await s.close()
        for evil in ("/\\evil.example", "https://evil.example/", "javascript:alert(1)"):
            s = await _client(dashboard, None)
            r = await s.post(dashboard.url + "login", allow_redirects=False,
                             data={"user": "nurse-w1", "next": evil,
                                   "password": dashboard.users["nurse-w1"]["password"]})
            assert r.status == 302 and r.headers["Location"] == "/", evil
            await s.close()
    run(dashboard, main())


def test_api_needs_session_and_csrf_and_scope(dashboard):
    async def main():
        async with aiohttp.ClientSession() as anon:
            r = await anon.post(dashboard.url + "api/bp", json={"ward": "w1"})
            assert r.status == 401
        s = await _client(dashboard, "nurse-w1")
        r = await s.post(dashboard.url + "api/bp", json={"ward": "w1"})
        assert r.status == 403 and "CSRF" in (await r.json())["error"]
        csrf, hello = await _csrf(s, dashboard, "ward", "w1")
        h = {"X-CSRF": csrf}
        r = await s.post(dashboard.url + "api/bp", json={"ward": "w2"}, headers=h)
        assert r.status == 403, await r.text()
        r = await s.post(dashboard.url + "api/bp", json={"patient": "p0005"}, headers=h)
        assert r.status == 403
        r = await s.post(dashboard.url + "api/bp", json={"ward": "nope"}, headers=h)
        assert r.status == 400
        r = await s.post(dashboard.url + "api/alarms/ack", json={"alarm_id": "x"}, headers=h)
        assert r.status == 404
        r = await s.get(dashboard.url + "api/patient/p0005/history")
        assert r.status == 403
        r = await s.get(dashboard.url + "api/patient/p0001/history")
        assert r.status == 200 and set((await r.json())["trend"]) >= {"hr", "spo2", "sys"}
        await s.close()
    run(dashboard, main())


def test_websocket_scope_is_enforced(dashboard):
    async def main():
        async with aiohttp.ClientSession() as anon:
            async with anon.ws_connect(dashboard.url + "ws?view=central") as ws:
                bye = json.loads((await ws.receive(timeout=10)).data)
                await ws.receive(timeout=10)
                assert bye == {"t": "bye", "why": "expired"} and ws.close_code == 4401
        s = await _client(dashboard, "nurse-w1")
        async with s.ws_connect(dashboard.url + "ws?view=ward&id=w2") as ws:
            assert json.loads((await ws.receive(timeout=10)).data)["why"] == "forbidden"
            await ws.receive(timeout=10)
            assert ws.close_code == 4403
        async with s.ws_connect(dashboard.url + "ws?view=central") as ws:
            hello = json.loads((await ws.receive(timeout=10)).data)
            mine = {t["dev"] for t in hello["tiles"]}
            assert {t["pid"] for t in hello["tiles"]} == {"p0001", "p0002", "p0003", "p0004",
                                                          "p0008"}  # + announced transport
            seen, snaps = set(), 0
            for _ in range(200):
                m = await ws.receive(timeout=10)
                if m.type == aiohttp.WSMsgType.BINARY:
                    seen |= {f"{p.device_id:016x}" for p in decode_message(m.data)}
                else:
                    doc = json.loads(m.data)
                    if doc["t"] == "snap":
                        snaps += 1
                        assert set(doc["devs"]) == mine
                if snaps >= 2 and seen:
                    break
            assert seen and seen <= mine
        await s.close()
    run(dashboard, main())


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda c: st.lists(c, max_size=3)
                         | st.dictionaries(st.sampled_from(["ward", "patient", "alarm_id", "x"]),
                                           c, max_size=3), max_leaves=6))
def test_hostile_json_bodies_get_4xx_never_5xx(dashboard, body):
    async def main():
        s = await _client(dashboard, "doctor")
        csrf, _ = await _csrf(s, dashboard)
        codes = []
        for path in ("api/bp", "api/alarms/ack"):
            if isinstance(body, dict) and body.get("ward") in ("w1", "w2"):
                body["ward"] = "w9"  # do not start real measurements here
            if isinstance(body, dict) and isinstance(body.get("patient"), str):
                body["patient"] = "p9999"
            r = await s.post(dashboard.url + path, data=json.dumps(body),
                             headers={"X-CSRF": csrf, "Content-Type": "application/json"})
            codes.append(r.status)
        r = await s.post(dashboard.url + "api/bp", data=b"{not json",
                         headers={"X-CSRF": csrf, "Content-Type": "application/json"})
        codes.append(r.status)
        await s.close()
        return codes
    codes = run(dashboard, main())
    assert all(400 <= c < 500 for c in codes), codes


def test_sessions_expire_and_are_bounded():
    from vcdash.sessions import Sessions

    now = [0.0]
    ss = Sessions(10, max_sessions=2, clock=lambda: now[0])
    a = ss.create("a")
    now[0] = 5
    assert ss.get(a.token) is a  # touched: expires at 15 now
    now[0] = 14
    assert ss.get(a.token, touch=False) is a
    now[0] = 15
    assert ss.get(a.token) is None and ss.get(a.token) is None
    b, c, d = ss.create("b"), ss.create("c"), ss.create("d")
    assert ss.get(b.token) is None and ss.get(c.token) and ss.get(d.token)
    assert ss.get(None) is None and ss.get("") is None
    with pytest.raises(ValueError):
        Sessions(0)


def test_revoked_grant_closes_the_live_feed(dashboard):
    from vcdash.web import STATE, WS_FORBIDDEN

    from vitalcore.clinical import Resource, Role

    cs = dashboard.system.clinical
    state = dashboard.runner.app[STATE]

    async def grant():
        cs.create_user("admin", "temp-nurse", "temp-password-1")
        return cs.grant_role("admin", "temp-nurse", Role.WARD_NURSE, Resource.ward("w2"))

    async def main():
        grant_id = await grant()
        dashboard.users["temp-nurse"] = {"password": "temp-password-1"}
        s = await _client(dashboard, "temp-nurse")
        old, state.scope_cache_s = state.scope_cache_s, 0.5
        try:
            async with s.ws_connect(dashboard.url + "ws?view=ward&id=w2") as ws:
                hello = json.loads((await ws.receive(timeout=10)).data)
                assert hello["t"] == "hello" and len(hello["tiles"]) == 3
                cs.revoke_grant("admin", grant_id)
                why = None
                for _ in range(100):
                    m = await ws.receive(timeout=10)
                    if m.type == aiohttp.WSMsgType.TEXT and json.loads(m.data)["t"] == "bye":
                        why = json.loads(m.data)["why"]
                    if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert why == "forbidden" and ws.close_code == WS_FORBIDDEN
            r = await s.get(dashboard.url + "ward/w2")
            assert r.status == 403
        finally:
            state.scope_cache_s = old
            await s.close()
    run(dashboard, main())
