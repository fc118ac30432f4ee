"""KPIs over a month of orders and the monthly report (HTML, PDF)."""

from __future__ import annotations

import pytest
from service_world import DEVICES, MIN

from vitalcore.errors import UsageError
from vitalcore.service import (
    Milestone,
    OrderRequest,
    compute_kpis,
    month_bounds,
    render_html,
    render_pdf,
)


def _scenario(w):
    d, c = w.desk, w.clock
    quick = d.create_order("nurse1", OrderRequest(DEVICES[0], "no ECG", "ext 1", ward_id="W1"))
    slow = d.create_order("nurse2", OrderRequest(DEVICES[1], "screen dark", "ext 2",
                                                 ward_id="W2", severity="serious",
                                                 emergency=True))
    spare = d.create_order("nurse1", OrderRequest(DEVICES[2], "loose clip", "ext 1",
                                                  ward_id="W1", severity="minor"))
    dup = d.create_order("nurse1", OrderRequest(DEVICES[0], "no ECG again", "ext 1",
                                                ward_id="W1"))
    d.cancel("biomed", dup.order_id, "same as the first")
    c.advance(60)
    d.respond("biomed", quick.order_id)
    d.start_work("biomed", quick.order_id)
    c.advance(20 * 60)
    d.mark_fixed("biomed", quick.order_id, "lead wire replaced")  # 21 min to repair
    d.verify("biomed", quick.order_id, True, "REF-SIM-7")
    d.sign_off("nurse1", quick.order_id)
    d.close("biomed", quick.order_id)
    c.advance(10 * 60)
    d.respond("biomed", slow.order_id)  # 31 min: late
    d.start_work("biomed", slow.order_id)
    c.advance(3 * 3600)
    d.mark_fixed("biomed", slow.order_id, "main board swapped")  # 3 h 31 min: late
    return quick, slow, spare, dup


def test_kpis_of_a_month(sqlite_world):
    w = sqlite_world
    quick, slow, spare, dup = _scenario(w)
    r = w.desk.monthly_kpis(2025, 11)
    assert (r.n_orders, r.n_cancelled, r.n_emergency) == (3, 1, 1)
    assert r.compliance[Milestone.RESPOND] == (1, 3)  # spare's respond clock ran out too
    assert r.response_compliance_pct == pytest.approx(33.3)
    assert r.compliance[Milestone.NOTIFY] == (3, 3)
    assert r.fix_rate_pct == pytest.approx(66.7)
    # time to repair: 21 min and 211 min (3 h 31 min)
    assert (r.ttr_median_min, r.ttr_mean_min) == (pytest.approx(116.0), pytest.approx(116.0))
    assert r.by_ward == [("W1", 2), ("W2", 1)] and r.by_model == [("VC-W1", 3)]
    assert r.by_severity == [("general", 1), ("minor", 1), ("serious", 1)]
    assert r.by_type == [("reported", 3)] and r.n_escalated == 2
    assert w.desk.monthly_kpis(2025, 12).n_orders == 0


def test_kpi_inputs_are_checked():
    with pytest.raises(UsageError):
        month_bounds(2025, 13)
    with pytest.raises(UsageError, match="after"):
        compute_kpis([], 10, 10, 10)
    t0, t1 = month_bounds(2024, 12)
    assert (t1 - t0) == 31 * 86_400_000_000


def test_monthly_report_html_and_pdf(sqlite_world):
    w = sqlite_world
    quick, slow, *_ = _scenario(w)
    r = w.desk.monthly_kpis(2025, 11)
    html = render_html(r, institution="City General")
    assert "City General" in html and quick.label in html and slow.label in html
    assert "33.3 %" in html and "66.7 %" in html and "<script" not in html
    pdf = render_pdf(r)
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000
    with pytest.raises(UsageError):
        render_html("not a report")  # type: ignore[arg-type]


def test_html_escapes_user_text(sqlite_world):
    w = sqlite_world
    w.desk.create_order("nurse1", OrderRequest(DEVICES[0], "x", "ext", ward_id="W1",
                                               fault_type="<script>alert(1)</script>"))
    w.clock.advance(MIN // 1_000_000)
    html = render_html(w.desk.monthly_kpis(2025, 11))
    assert "<script>" not in html and "&lt;script&gt;" in html
