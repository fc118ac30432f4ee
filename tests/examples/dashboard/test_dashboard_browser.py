"""End to end in headless Chromium against the running dashboard (real MQTT devices)."""

from __future__ import annotations

import time

from dash_helpers import login, new_page


def _wait(page, js: str, timeout_s: float = 60.0, arg=None):
    return page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000).json_value()


def test_nurse_ward_live_alarm_ack_and_ward_bp(dashboard, browser, shots, screenshot):
    page = new_page(browser)
    login(page, dashboard, "nurse-w1", "/ward/w1")
    page.wait_for_url("**/ward/w1")
    _wait(page, "document.querySelectorAll('#tiles .tile').length >= 3")
    # live values move: HR shown, waveform packets arrive and get drawn
    _wait(page, "[...document.querySelectorAll('.tile .hr b')].some(e => e.textContent !== '--')")
    p0 = page.evaluate("window.__dash.packets")
    _wait(page, f"window.__dash.packets > {p0} + 10 && window.__dash.waveFrames > 20")
    sig = ("(() => { const c = document.querySelector('#overlay');"
           " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
           " let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i + 1]) | 0;"
           " return h; })()")
    before = page.evaluate(sig)
    time.sleep(0.5)
    assert page.evaluate(sig) != before  # the sweep moved
    page.screenshot(path=str(shots / "ward-live.png"))
    # the leads-off device raises an alarm; acknowledge it
    _wait(page, "document.querySelector('.tile .alarm:not([hidden]) button.ack:not([hidden])')",
          timeout_s=90)
    page.screenshot(path=str(shots / "ward-alarm.png"))
    page.click(".tile .alarm:not([hidden]) button.ack:not([hidden])")
    _wait(page, "[...document.querySelectorAll('.tile .amsg')].some("
                "e => e.textContent.includes('acknowledged by nurse-w1'))")
    # ward-wide BP: progress, then results
    page.click("#bp-ward")
    _wait(page, "document.querySelector('#bp-progress').textContent.includes('of')")
    _wait(page, "document.querySelector('#bp-progress').classList.contains('done')",
          timeout_s=120)
    text = page.inner_text("#bp-progress")
    assert "measured" in text
    nibp = page.eval_on_selector_all(".tile .nibp", "es => es.map(e => e.textContent)")
    assert any("/" in t and "--" not in t for t in nibp), nibp
    screenshot(page, "dashboard-ward.png")
    page.context.close()


def test_central_view_all_wards_transport_alarm_list_and_drill_down(dashboard, browser, shots):
    page = new_page(browser)
    login(page, dashboard, "central")
    page.wait_for_url("**/central")
    _wait(page, "document.querySelectorAll('#tiles .tile').length == 8")
    groups = page.eval_on_selector_all(".wardgroup h2", "es => es.map(e => e.textContent)")
    assert len(groups) == 3 and groups[-1] == "In transport", groups
    assert page.eval_on_selector_all(".wardgroup.transport .tile",
                                     "es => es.map(e => e.dataset.pid)") == ["p0008"]
    assert "in transport w2" in page.inner_text(".wardgroup.transport .tile .bed")
    _wait(page, "document.querySelectorAll('#alarms li').length >= 1", timeout_s=90)
    _wait(page, "window.__dash.waveFrames > 20")
    page.screenshot(path=str(shots / "central.png"), full_page=True)
    # drill down: ward, then a patient of it
    page.click(".wardgroup h2 a >> nth=1")
    page.wait_for_url("**/ward/w2")
    _wait(page, "document.querySelectorAll('#tiles .tile').length == 3")
    page.click(".tile .name >> nth=0")
    page.wait_for_url("**/patient/p0005")
    _wait(page, "window.__dash.historyLoaded >= 1 && window.__dash.waveFrames > 5")
    assert page.get_attribute("#abpm-link", "href") == "/patient/p0005/abpm"
    page.screenshot(path=str(shots / "patient.png"), full_page=True)
    page.context.close()


def test_forbidden_ward_is_a_403_page(dashboard, browser):
    page = new_page(browser)
    login(page, dashboard, "nurse-w1", "/ward/w1")
    page.wait_for_url("**/ward/w1")
    resp = page.goto(dashboard.url + "ward/w2")
    assert resp.status == 403
    assert "outside what nurse-w1 may see" in page.inner_text("#error-page")
    resp = page.goto(dashboard.url + "patient/p0005")
    assert resp.status == 403
    page.context.close()


def test_session_expiry_is_shown_without_reload_loop(dashboard, browser):
    page = new_page(browser)
    old = dashboard.sessions.ttl_s
    dashboard.sessions.ttl_s = 4.0
    try:
        login(page, dashboard, "nurse-w2", "/ward/w2")
        page.wait_for_url("**/ward/w2")
        _wait(page, "window.__dash.state == 'live'")
        _wait(page, "window.__dash.state == 'expired'", timeout_s=15)
    finally:
        dashboard.sessions.ttl_s = old
    assert "session has ended" in page.inner_text("#conn")
    assert page.evaluate("window.__dash.lastClose") == 4401
    n = page.evaluate("window.__dash.connects")
    time.sleep(3)  # no reconnect attempts, no reloads
    assert page.evaluate("window.__dash.connects") == n and page.url.endswith("/ward/w2")
    page.click("#relogin")
    page.wait_for_url("**/login?**")
    assert page.is_visible("#expired-notice")
    page.context.close()


def test_web_restart_reconnects_with_backoff(dashboard, browser):
    page = new_page(browser)
    login(page, dashboard, "nurse-w1", "/ward/w1")
    _wait(page, "window.__dash.state == 'live'")
    dashboard.loop.run(dashboard.restart_web(down_s=2.5))
    # the page said what happened, then came back on its own (same page, no reload)
    _wait(page, "window.__dash.connects >= 2 && window.__dash.state == 'live'", timeout_s=30)
    assert page.evaluate("window.__dash.lastClose") not in (4401, 4403)
    said = page.evaluate("window.__dash.log")
    assert any("Connection to the server lost; reconnecting in" in t for t in said), said
    p0 = page.evaluate("window.__dash.packets")
    _wait(page, f"window.__dash.packets > {p0} + 5")
    page.context.close()
