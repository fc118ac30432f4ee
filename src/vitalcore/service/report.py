"""The monthly service report as HTML (jinja2) and as a printable A4 PDF (weasyprint).

Same approach as :mod:`vitalcore.clinical.report`: one self-contained HTML document
(styles inline), the PDF rendered from it. jinja2 and weasyprint (the ``reports``
extra) are imported on use; the template ships in ``vitalcore/service/templates``.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..reporting import html_to_pdf, template_environment
from .kpi import KPIReport
from .model import Milestone, minute
from .sla import ClockState, clock_views

__all__ = ["render_html", "render_pdf"]



def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} %"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def _context(r: KPIReport, title: str, institution: str) -> dict[str, Any]:
    rows = []
    for o in r.orders:
        views = {v.milestone: v for v in clock_views(
            o.reported_us, o.sla_s, {m: o.done_us(m) for m in Milestone}, r.at_us)}
        rows.append({"label": o.label, "reported": minute(o.reported_us), "ward": o.ward_id or "–",
                     "model": o.model, "serial": o.serial, "type": o.fault_type,
                     "severity": o.severity.value, "emergency": o.emergency,
                     "status": o.status.value, "team": o.team,
                     "respond": views[Milestone.RESPOND].state.value,
                     "fix": views[Milestone.FIX].state.value,
                     "ttr": "–" if o.fixed_us is None else f"{(o.fixed_us - o.reported_us) / 60e6:.0f}"})
    return {
        "title": title, "institution": institution, "period_from": minute(r.t0_us),
        "period_to": minute(r.t1_us), "generated": minute(r.at_us), "r": r,
        "compliance": [{"name": m.value.replace("_", " "), "met": c.met, "judged": c.judged,
                        "pct": _pct(c.pct)} for m, c in r.compliance.items()],
        "response": _pct(r.response_compliance_pct), "fix_rate": _pct(r.fix_rate_pct),
        "ttr_median": _num(r.ttr_median_min), "ttr_mean": _num(r.ttr_mean_min),
        "ttr_p90": _num(r.ttr_p90_min), "rows": rows,
        "breakdowns": [("Faults by type", r.by_type), ("Faults by model", r.by_model),
                       ("Faults by ward", r.by_ward), ("Faults by severity", r.by_severity)],
        "states": [s.value for s in ClockState],
    }


def render_html(report: KPIReport, *, title: str = "Monthly service report",
                institution: str = "") -> str:
    """The report as one self-contained HTML document (prints on A4)."""
    if not isinstance(report, KPIReport):
        raise UsageError("render_html needs a KPIReport (ServiceDesk.kpis / monthly_kpis)")
    env = template_environment("vitalcore.service")
    css = env.loader.get_source(env, "service.css")[0]  # type: ignore[union-attr]
    return env.get_template("monthly.html.j2").render(
        css=css, **_context(report, title, institution))


def render_pdf(report: KPIReport, *, title: str = "Monthly service report",
               institution: str = "") -> bytes:
    """The report as an A4 PDF rendered by weasyprint from :func:`render_html`."""
    return html_to_pdf(render_html(report, title=title, institution=institution))
