"""The report: a typed context built from the DuckDB file, rendered to HTML (Jinja2) and PDF (WeasyPrint).

Every number in the report comes from the database through ``context.build_context``; the templates
only format. The modules, from the bottom up: ``aggregates`` (dataset-level rows), ``verdicts``,
``interventions``, ``comparison``, ``literature``, ``heatmaps``, ``sentences``, ``facts``, ``charts``
and ``figures``; then ``context`` (the only database reader), ``sections`` (the ordered sections),
``render`` (HTML and PDF) and ``summary`` (the JSON document).
"""

from tasks.report.context import ReportContext, build_context
from tasks.report.render import render_html, render_pdf
from tasks.report.summary import summary_document

__all__ = ["ReportContext", "build_context", "render_html", "render_pdf", "summary_document"]
