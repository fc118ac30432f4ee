"""The work-order app over HTTP (JSON API, forms) and in headless Chromium (screenshots)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

from woweb.demo import demo_png


def _call(served, method: str, path: str, user: str | None = "nurse.li", body=None,
          ctype: str = "application/json"):
    req = urllib.request.Request(served.url + path, method=method,
                                 data=None if body is None else (
                                     body if isinstance(body, bytes) else json.dumps(body).encode()))
    if body is not None:
        req.add_header("Content-Type", ctype)
    if user is not None:
        token = base64.b64encode(f"{user}:{user}-pw".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def test_json_api_creates_and_advances_an_order(served):
    body = {"device_id": "0000000000001005", "description": "alarm speaker silent",
            "contact": "nurse Li, ext 3301", "severity": "general", "ward_id": "W1",
            "photos": [base64.b64encode(demo_png()).decode()]}
    code, _, raw = _call(served, "POST", "/api/orders", body=body)
    assert code == 201, raw
    order = json.loads(raw)
    assert order["channel"] == "api" and order["clocks"]["respond"]["state"] == "running"
    oid = order["order_id"]
    code, _, raw = _call(served, "POST", f"/api/orders/{oid}/steps", "biomed.wu",
                         {"action": "respond", "note": "coming"})
    assert code == 200 and json.loads(raw)["status"] == "responded"
    code, _, raw = _call(served, "POST", f"/api/orders/{oid}/steps", "nurse.li",
                         {"action": "start"})
    assert code == 403 and "may not maintain_devices" in json.loads(raw)["error"]
    code, _, raw = _call(served, "POST", "/api/orders", body={**body, "device_id": "00000000000000ff"})
    assert code == 400 and "unknown device" in json.loads(raw)["error"]
    code, _, raw = _call(served, "POST", "/api/orders", body=b"{not json")
    assert code == 400
    code, _, raw = _call(served, "GET", "/api/orders?status=responded")
    assert oid in [o["order_id"] for o in json.loads(raw)]
    code, _, _ = _call(served, "GET", "/api/orders", user=None)
    assert code == 401


def test_failed_logins_are_limited_per_address(served):
    """Guesses empty the address's bucket (429 then, unchecked); a login verified
    before (in the app's login cache) still gets in."""
    from aiohttp import web
    from woweb.web import make_app

    from vitalcore.server.auth import LoginLimiter

    async def start():
        runner = web.AppRunner(make_app(served.store, served.desk,
                                        LoginLimiter(burst=2, rate_per_s=0.001)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    runner, port = served.loop.run(start())
    try:
        other = type(served)(served.loop, served.store, served.desk,
                             f"http://127.0.0.1:{port}", runner)
        assert _call(other, "GET", "/api/orders")[0] == 200  # nurse.li: verified, cached
        codes = [_call(other, "GET", "/api/orders", user="mallory")[0] for _ in range(4)]
        assert codes == [401, 401, 429, 429]
        assert _call(other, "GET", "/api/orders", user="biomed.wu")[0] == 429  # not cached
        assert _call(other, "GET", "/api/orders")[0] == 200
    finally:
        served.loop.run(runner.cleanup())


def test_closing_without_verification_is_refused_on_the_page(served):
    orders = json.loads(_call(served, "GET", "/api/orders?status=fixed")[2])
    oid = orders[0]["order_id"]
    code, ctype, raw = _call(served, "POST", f"/orders/{oid}/step", "biomed.wu",
                             b"action=close", "application/x-www-form-urlencoded")
    assert code == 400 and "no passed function test" in raw.decode()


def test_pages_in_chromium_with_screenshots(served, browser, screenshot):
    def page_for(user: str):
        ctx = browser.new_context(http_credentials={"username": user, "password": f"{user}-pw"},
                                  viewport={"width": 1360, "height": 860})
        return ctx.new_page()

    page = page_for("nurse.li")
    page.goto(served.url + "/")
    assert page.locator("table.orders tr").count() >= 6
    assert page.locator(".clock.breached").count() >= 1  # the dead terminal's clocks ran out
    screenshot(page, "workorders-list.png")
    page.goto(served.url + "/orders/new")
    page.select_option("select[name=device_id]", "0000000000001008")
    page.select_option("select[name=ward_id]", "W1")
    page.fill("textarea[name=description]", "battery empty after two hours")
    page.fill("input[name=room]", "301")
    screenshot(page, "workorders-new.png")
    page.click("form.intake button")
    page.wait_for_url("**/orders/*")
    assert "battery empty after two hours" in page.inner_text("main")
    assert page.locator(".clock.running").count() == 4  # notify met: the pager accepted
    assert page.locator(".clock.met").count() == 1
    page.context.close()
    engineer = page_for("biomed.wu")
    engineer.goto(served.url + "/")
    engineer.click("tr:has-text('terminal dead') a")
    engineer.wait_for_url("**/orders/*")
    assert "Escalated" in engineer.inner_text("main")
    screenshot(engineer, "workorders-detail.png")
    engineer.goto(served.url + "/report")
    assert "Response-time compliance" in engineer.inner_text("body")
    screenshot(engineer, "workorders-report.png")
    code, ctype, pdf = _call(served, "GET", "/report?format=pdf", "biomed.wu")
    assert code == 200 and ctype == "application/pdf" and pdf.startswith(b"%PDF")
    engineer.context.close()
    vendor = page_for("acme.tech")
    vendor.goto(served.url + "/vendor")
    text = vendor.inner_text("main")
    assert "0000000000001003" in text and "expires in" in text and "NIBP cuff" in text
    screenshot(vendor, "workorders-vendor.png")
    vendor.goto(served.url + "/vendor/devices/0000000000001001")  # not entrusted to ACME
    assert "may not view_device_archive" in vendor.inner_text("main")
    vendor.context.close()


def test_vendor_sees_only_its_devices_orders(served):
    code, _, raw = _call(served, "GET", "/api/orders", "acme.tech")
    mine = json.loads(raw)
    assert code == 200 and {o["device"]["id"] for o in mine} == {"0000000000001003"}
    other = json.loads(_call(served, "GET", "/api/orders?status=closed")[2])[0]["order_id"]
    code, _, raw = _call(served, "GET", f"/api/orders/{other}", "acme.tech")
    assert code == 403 and "not an order of a device entrusted" in json.loads(raw)["error"]
    code, _, raw = _call(served, "GET", f"/api/orders/{mine[0]['order_id']}", "acme.tech")
    assert code == 200 and json.loads(raw)["timeline"][1]["actor"] == "system:notify"
