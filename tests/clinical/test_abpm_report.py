"""The ABPM report rendered: HTML holds the figures, the PDF is produced and readable."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html import unescape

import pytest
from test_abpm import SMALL, readings

from vitalcore.clinical.abpm import NIBPReadings, abpm_report
from vitalcore.clinical.report import ReportHeader, hourly_profile_svg, render_html, render_pdf
from vitalcore.errors import UsageError

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

HEADER = ReportHeader("P-0042", "Jane <Doe>", "Cardiology 3", "0000000000000100")


@pytest.fixture(scope="module")
def report():
    return abpm_report(readings(), "UTC", config=SMALL)


def test_html_holds_the_figures(report):
    html = render_html(report, HEADER)
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    for figure in ("126/78 mmHg", "day 135/85, night 112/68", "systolic 16.9 %",
                   "diastolic 19.1 %", "dipper", "5 valid of 10", "(50 %)",
                   "Insufficient data", "valid readings 50 % of received (need >= 70 %)",
                   "sys_range 1", "pp_range 1", "Thu 11 03:00", "P-0042", "Cardiology 3",
                   "2026-06-10 08:00", "(UTC)"):
        assert figure in text, figure
    stats = re.search(r'<table id="stats">(.*?)</table>', html, re.S).group(1)
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>",
                                                                      stats, re.S)[1:]]
    assert cells == [["Day", "3", "135", "85", "102", "72", "67", "33", "67"],
                     ["Night", "2", "112", "68", "83", "59", "0", "50", "50"],
                     ["24 h", "5", "126", "78", "92", "67", "40", "40", "60"]]
    assert len(re.findall(r'<tr class="(?:in)?valid">', html)) == 10
    assert len(re.findall(r'<tr class="invalid">', html)) == 5
    assert "Jane &lt;Doe&gt;" in html and "Jane <Doe>" not in html  # escaped
    uri = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html).group(1)
    assert b"<svg" in base64.b64decode(uri)


def test_plot_is_deterministic_and_empty_report_renders(report):
    assert hourly_profile_svg(report) == hourly_profile_svg(report)
    empty = abpm_report(NIBPReadings.from_arrays([], [], []), "Europe/Berlin")
    html = render_html(empty, ReportHeader("P-1"))
    assert "no readings in the period" in html and "Insufficient data" in html
    assert "insufficient data" in html  # the dipping class
    with pytest.raises(UsageError, match="ABPMReport"):
        render_html({"n": 0}, HEADER)
    with pytest.raises(UsageError, match="patient_id"):
        ReportHeader("")


def test_pdf_is_produced_and_readable(report, tmp_path, caplog):
    pytest.importorskip("weasyprint")
    pdf = render_pdf(report, HEADER)
    css_trouble = [r.getMessage() for r in caplog.records if r.name == "weasyprint"
                   and ("Ignored" in r.getMessage() or "Error" in r.getMessage())]
    assert css_trouble == []  # the stylesheet parses (it is not HTML-escaped, ...)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    if not (shutil.which("pdftotext") and shutil.which("pdfinfo")):
        pytest.skip("poppler-utils (pdftotext, pdfinfo) not installed")
    path = tmp_path / "abpm.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", path], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 1 <= pages <= 3
    assert re.search(r"Page size:\s+595(\.\d+)? x 84[12]", info)  # A4 in points
    text = subprocess.run(["pdftotext", "-layout", path, "-"], capture_output=True, text=True,
                          check=True).stdout
    for figure in ("Ambulatory blood pressure report", "126/78 mmHg", "P-0042",
                   "Jane <Doe>", "Insufficient data", "dipper", f"page 1 of {pages}",
                   "generated 2026-06-11 06:00 (UTC)"):
        assert figure in text, figure
    assert text.count("P-0042") == pages  # the running header on every page
    assert re.search(r"Night\s+2\s+112\s+68\s+83\s+59\s+0\s+50\s+50", text)
