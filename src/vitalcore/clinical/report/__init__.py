"""The ambulatory BP report rendered for clinicians: HTML (jinja2 + an SVG plot from
matplotlib) and a printable A4 PDF from the same HTML (weasyprint).

Needs the ``reports`` extra (jinja2, matplotlib, weasyprint), imported on first use.
"""

from __future__ import annotations

from .plot import hourly_profile_svg
from .render import ReportHeader, render_html, render_pdf

__all__ = ["ReportHeader", "render_html", "render_pdf", "hourly_profile_svg"]
