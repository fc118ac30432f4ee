"""The lifecycle web app over HTTP: login, scope, pages, exports, JSON API."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import openpyxl
import pytest
from aiohttp import BasicAuth
from aiohttp.test_utils import TestClient, TestServer
from vclife.demo import DEVICES
from vclife.web import create_app

BIOMED = BasicAuth("biomed", "biomed-pw")
NURSE = BasicAuth("nurse", "nurse-pw")


def fetch(demo, *requests, limiter=None):
    """``[(status, headers, body bytes)]`` of GET requests ``(path, auth)`` on the app."""

    async def main():
        app = create_app(demo.store, demo.tracker, limiter)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path, auth in requests:
                r = await client.get(path, auth=auth)
                out.append((r.status, r.headers, await r.read()))
            return out

    return asyncio.run(main())


def audit_actions(demo, user):
    with demo.store.db.transaction(write=False) as tx:
        return tx.all("SELECT action, outcome FROM audit WHERE user_name = ? ORDER BY id",
                      (user,))


def test_login_and_scope_are_enforced_and_audited(demo):
    (anon, _, _), (wrong, _, _), (nurse, _, body), (drill, _, _) = fetch(
        demo, ("/", None), ("/", BasicAuth("biomed", "nope")), ("/", NURSE),
        (f"/terminals/{DEVICES[2]:016x}", NURSE))
    assert (anon, wrong, nurse, drill) == (401, 401, 403, 403)
    assert b"view_device_archive" in body
    assert ("lifecycle_index", "denied") in audit_actions(demo, "nurse")
    assert ("fleet_drill_down", "denied") in audit_actions(demo, "nurse")


def test_failed_logins_are_limited_per_address(demo):
    from vitalcore.server.auth import LoginLimiter

    guesses = [("/", BasicAuth("biomed", f"guess-{i}")) for i in range(5)]
    got = fetch(demo, ("/", BIOMED), *guesses, ("/", BIOMED),
                limiter=LoginLimiter(burst=3, rate_per_s=0.001))
    codes = [status for status, _, _ in got]
    # a right login takes nothing; 3 wrong ones empty the bucket; then even the right
    # password is refused unchecked from that address until it refills
    assert codes == [200, 401, 401, 401, 429, 429, 429]
    assert got[4][1]["Retry-After"] == "60"


def test_due_page_lists_what_the_telemetry_made_due(demo):
    [(status, _, body)] = fetch(demo, ("/", BIOMED))
    html = body.decode()
    assert status == 200
    due = demo.tracker.due()
    assert [d.asset.serial for d in due][:2] == ["LW-1002", "BAT-1001"]
    for d in due:
        assert (d.asset.serial or "") in html
    assert html.index("LW-1002") < html.index("BAT-1001")  # over the limit first
    assert "over limit" in html and "unknown device" in html


def test_drill_down_pages(demo):
    (bat, _, b1), (term, _, b2), (missing, _, _), (bad, _, _) = fetch(
        demo, ("/assets/battery/BAT-1002", BIOMED), (f"/terminals/{DEVICES[0]:016x}", BIOMED),
        ("/assets/battery/NOPE", BIOMED), ("/terminals/xyz", BIOMED))
    assert (bat, term, missing, bad) == (200, 200, 404, 400)
    page = b1.decode()
    assert f"{DEVICES[1]:016x}" in page and f"{DEVICES[4]:016x}" in page  # install history
    assert "moved" in page
    t = b2.decode()
    for step in ("bound", "released", "cleaned", "checked", "SIM-REF-1"):
        assert step in t
    assert "BAT-1001" in t and "SD-1001" in t  # accessories in the terminal now


def test_usage_page_and_exports_agree_with_the_library(demo):
    rows = demo.tracker.usage(1_764_547_200_000_000, 1_767_225_600_000_000)  # Dec 2025
    (page, _, html), (c, ch, csv_body), (x, xh, xlsx), (j, _, js), (bad, _, _) = fetch(
        demo, ("/usage?from=2025-12", BIOMED), ("/export/usage.csv?from=2025-12", BIOMED),
        ("/export/lifecycle.xlsx?from=2025-12", BIOMED), ("/api/lifecycle?from=2025-12", BIOMED),
        ("/usage?from=12-2025", BIOMED))
    assert (page, c, x, j, bad) == (200, 200, 200, 200, 400)
    # CARD: two patients 3 h each; SURG: one 6 h, one transferred in for 3 h (still bound:
    # counted up to the demo's clock, not to the end of the month)
    assert {r.ward_id: round(r.bound_h, 3) for r in rows} == {"CARD": 6.0, "SURG": 9.0}
    got = {r["ward_id"]: r for r in csv.DictReader(io.StringIO(csv_body.decode()))}
    for r in rows:
        assert float(got[r.ward_id]["bound_h"]) == round(r.bound_h, 2)
        assert f"{r.bound_h:,.1f}" in html.decode()
    assert "attachment" in ch["Content-Disposition"] and ch["Content-Type"].startswith("text/csv")
    wb = openpyxl.load_workbook(io.BytesIO(xlsx))
    assert wb.sheetnames == ["assets", "due", "usage"] and "spreadsheetml" in xh["Content-Type"]
    assert wb["assets"].max_row == 1 + len(demo.tracker.assets())
    doc = json.loads(js)
    assert doc["schema"] == "vitalcore.lifecycle/1"
    assert [d["serial"] for d in doc["due"]] == [d.asset.serial for d in demo.tracker.due()]
    assert sorted(u["ward_id"] for u in doc["usage"]) == ["CARD", "SURG"]


def test_events_api_pages_through_the_event_log(demo):
    [(s1, _, b1)] = fetch(demo, ("/api/events?limit=5", BIOMED))
    first = json.loads(b1)
    [(s2, _, b2)] = fetch(demo, (f"/api/events?since={first[-1]['event_id']}", BIOMED))
    rest = json.loads(b2)
    assert s1 == s2 == 200 and len(first) == 5
    ids = [e["event_id"] for e in first + rest]
    assert ids == sorted(set(ids)) and len(ids) == len(demo.tracker.events(limit=100_000))
    kinds = {e["kind"] for e in rest}
    assert {"over_limit", "reset", "moved", "unknown_device"} <= kinds
    [(bad, _, _)] = fetch(demo, ("/api/events?since=x", BIOMED))
    assert bad == 400


@pytest.mark.parametrize("path", ["/export/nope.csv", "/nope"])
def test_unknown_paths_are_404(demo, path):
    [(status, _, _)] = fetch(demo, (path, BIOMED))
    assert status == 404
