"""What the printable reports share (the ABPM report, the monthly service report): a
jinja2 environment over a package's ``templates`` directory and HTML-to-PDF.

jinja2 and weasyprint (the ``reports`` extra) are imported on first use.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

__all__ = ["template_environment", "html_to_pdf"]


@cache
def template_environment(package: str) -> jinja2.Environment:
    """The jinja2 environment of ``package``'s ``templates`` (autoescaped HTML, undefined
    names an error), made once per package."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)


def html_to_pdf(html: str) -> bytes:
    """An A4 PDF of a self-contained HTML document (styles inline), by weasyprint."""
    import weasyprint

    return weasyprint.HTML(string=html).write_pdf()
