"""Rendering: the Jinja2 environment over ``templates/``, the HTML report and its PDF.

The HTML is self-contained: CSS inline, charts as ``data:`` URIs, the dataset's text escaped
(autoescape), and a Content-Security-Policy that allows only the report's own script (by its hash),
inline styles and ``data:`` images. Undefined template variables are errors (StrictUndefined).
"""

from __future__ import annotations

import base64
import hashlib
import math
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tasks.report.context import ReportContext
from tasks.report.sections import shown_sections

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
"""The templates folder: beside ``tasks`` in a checkout and in site-packages alike."""
ENTRY = "base.html.j2"
RESULT_CLASSES = {
    "passes": "yes",
    "fails": "no",
    "unclear": "partly",
    "reproduces": "yes",
    "does not reproduce": "no",
    "not measured": "partly",
    "not settled": "partly",
    "stable": "yes",
    "changes with the seed": "no",
    "no references": "partly",
}
"""The colour class (``verdict-yes/no/partly``) of a sanity result, a literature outcome or a seed stability."""


def format_number(value: float, spec: str = ".3f") -> str:
    """``format(value, spec)``, with 'n/a' for NaN and no minus sign on a rounded zero."""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    text = format(value, spec)
    return text.replace("-", "", 1) if text.lstrip("+-").strip("0.,") == "" and text.startswith("-") else text


def format_percent(share: float, spec: str = ".1f") -> str:
    """A share in [0, 1] as a percentage number: ``format_number(100 · share, spec)``."""
    return format_number(100 * share, spec)


def is_nan(value: object) -> bool:
    """Whether a value is a NaN (the template test ``nan``); non-numbers are not."""
    try:
        return math.isnan(value)  # type: ignore[arg-type]
    except TypeError:
        return False


@cache
def environment() -> Environment:
    """The report's Jinja2 environment: templates from ``templates/``, autoescaped, strict."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_number
    env.filters["percent"] = format_percent
    env.filters["result_class"] = RESULT_CLASSES.__getitem__
    env.tests["nan"] = is_nan
    return env


def render_html(context: ReportContext) -> str:
    """The self-contained HTML report of a context."""
    script = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    return (
        environment()
        .get_template(ENTRY)
        .render(
            report=context,
            sections=shown_sections(context),
            css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
            script=script,
            script_hash="sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii"),
        )
    )


def render_pdf(html: str, path: Path) -> None:
    """Render the HTML report to PDF with WeasyPrint, loading nothing but inline ``data:`` resources."""
    import logging

    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    logging.getLogger("fontTools").setLevel(logging.WARNING)
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",))).write_pdf(path)
