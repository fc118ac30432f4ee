"""The ABPM report as HTML (jinja2) and as a printable A4 PDF (weasyprint, same HTML).

jinja2, matplotlib and weasyprint (the ``reports`` extra) are imported on use. The
template and stylesheet ship as package data in ``vitalcore/clinical/report/templates``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ...errors import UsageError
from ...reporting import html_to_pdf, template_environment
from ..abpm import INVALID_REASONS, ABPMReport
from .plot import hourly_profile_svg

__all__ = ["ReportHeader", "render_html", "render_pdf"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PERIODS = ("-", "day", "night")


@dataclass(frozen=True)
class ReportHeader:
    """Who and what the report is about (printed on every page).

    ``patient_id`` is required; the others are printed when given. ``generated_us``
    (µs since the epoch) is the "generated at" time; default: the report's ``t1_us``, so
    the same data always renders the same document.
    """

    patient_id: str
    patient_name: str = ""
    ward: str = ""
    device: str = ""
    generated_us: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.patient_id, str) or not self.patient_id:
            raise UsageError("ReportHeader needs a non-empty patient_id")


def _num(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _context(report: ABPMReport, header: ReportHeader) -> dict[str, Any]:
    zone = ZoneInfo(report.tz)

    def when(t_us: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return (_EPOCH + timedelta(microseconds=int(t_us))).astimezone(zone).strftime(fmt)

    cfg = report.config
    r = report.readings
    rows = []
    for i in range(len(r)):
        k = int(report.reason[i])
        rows.append({"time": when(r.ts_us[i], "%a %d %H:%M"), "period": _PERIODS[report.period[i]],
                     "sys": _num(r.sys[i] if r.sys[i] == r.sys[i] else None),
                     "dia": _num(r.dia[i] if r.dia[i] == r.dia[i] else None),
                     "map": _num(r.map[i] if r.map[i] == r.map[i] else None),
                     "pr": _num(r.pr[i] if r.pr[i] == r.pr[i] else None),
                     "status": "valid" if k == 0 else INVALID_REASONS[k - 1], "valid": k == 0})
    periods = []
    for name, p, load in (("Day", report.day, report.load_day),
                          ("Night", report.night, report.load_night),
                          ("24 h", report.h24, report.load_24h)):
        periods.append({"name": name, "n": p.n, "sys": _num(p.sys), "dia": _num(p.dia),
                        "map": _num(p.map), "pr": _num(p.pr), "load_sys": _num(load.sys_pct),
                        "load_dia": _num(load.dia_pct), "load_any": _num(load.any_pct)})
    ex = {k: {"value": _num(v.value), "time": when(v.ts_us, "%a %d %H:%M")}
          for k, v in report.extremes.items()}
    hm = "%H:%M"

    def window(w: tuple) -> str:
        return f"{w[0].strftime(hm)}–{w[1].strftime(hm)}"

    c = cfg.criteria
    return {
        "h": header, "tz": report.tz, "report": report,
        "period_from": when(report.t0_us), "period_to": when(report.t1_us),
        "generated": when(header.generated_us if header.generated_us is not None
                          else report.t1_us),
        "valid_pct": _num(report.valid_pct), "periods": periods, "extremes": ex,
        "dip_sys": _num(report.dipping_sys_pct, 1), "dip_dia": _num(report.dipping_dia_pct, 1),
        "rows": rows, "invalid": {k: v for k, v in report.invalid.items() if v},
        "day_window": window(cfg.day), "night_window": window(cfg.night),
        "thr_day": "{:g}/{:g}".format(*cfg.day_threshold),
        "thr_night": "{:g}/{:g}".format(*cfg.night_threshold),
        "crit": {"sys": "{:g}–{:g}".format(*c.sys_mmhg), "dia": "{:g}–{:g}".format(*c.dia_mmhg),
                 "pp": "{:g}–{:g}".format(*c.pulse_pressure_mmhg),
                 "pr": "{:g}–{:g}".format(*c.pr_bpm)},
        "plot_uri": "data:image/svg+xml;base64," + base64.b64encode(
            hourly_profile_svg(report).encode()).decode(),
    }


def render_html(report: ABPMReport, header: ReportHeader) -> str:
    """The report as one self-contained HTML document (styles inline, the plot an SVG
    data URI): prints on A4 from a browser or through :func:`render_pdf`."""
    if not isinstance(report, ABPMReport):
        raise UsageError("render_html needs an ABPMReport (see abpm_report)")
    if not isinstance(header, ReportHeader):
        raise UsageError("render_html needs a ReportHeader")
    env = template_environment("vitalcore.clinical.report")
    css = env.loader.get_source(env, "abpm.css")[0]  # type: ignore[union-attr]
    return env.get_template("abpm.html.j2").render(css=css, **_context(report, header))


def render_pdf(report: ABPMReport, header: ReportHeader) -> bytes:
    """The report as a PDF (A4, running header with patient and period, page numbers),
    rendered by weasyprint from :func:`render_html`."""
    return html_to_pdf(render_html(report, header))
