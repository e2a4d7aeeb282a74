"""The ``report`` flow: render a stored run as self-contained HTML and as PDF."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from pydantic import BaseModel

from tasks.config import OutputSettings
from tasks.pipeline.progress import reported
from tasks.pipeline.steps import (
    as_is,
    build_report_context_task,
    publish_artifacts_task,
    render_html_task,
    render_pdf_task,
    write_summary_task,
)


class ReportPaths(BaseModel):
    """Where the rendered report went."""

    run_id: str
    html: Path
    pdf: Path | None
    summary: Path


@flow(name="report")
def report(
    db: Path,
    run_id: str | None = None,
    out_dir: Path = Path("audit-output"),
    pdf: bool = True,
    example_rows: int = OutputSettings().example_rows,
) -> ReportPaths:
    """Render one run of the database (the most recent one when ``run_id`` is None).

    ``example_rows`` caps the example table (``OutputSettings.example_rows``).
    """
    logger = get_run_logger()
    steps = 4 + pdf
    with reported("report", logger, bar=False) as progress:
        context = build_report_context_task(Path(db), run_id, datetime.now(UTC), example_rows)
        progress(1, steps, f"numbers and charts of run {context.run_id}")
        html = render_html_task(as_is(context), Path(out_dir))
        progress(2, steps, f"HTML report: {html}")
        summary = write_summary_task(as_is(context), Path(out_dir))
        progress(3, steps, f"JSON summary: {summary}")
        pdf_path = render_pdf_task(html) if pdf else None
        if pdf_path is not None:
            progress(4, steps, f"PDF report: {pdf_path}")
        publish_artifacts_task(as_is(context), html, pdf_path, summary)
        progress(steps, steps, "Prefect artifacts")
    return ReportPaths(run_id=context.run_id, html=html, pdf=pdf_path, summary=summary)
