"""Size and render time of the report of a dataset-wide review: 10,000 and 100,000 examples.

Takes a stored run (``--source``; without it, audits ``--limit`` examples of the default preset into a
temporary database first), copies the database, and replicates the run's example rows in DuckDB until the
run has each requested number of examples: every per-example table (``examples``, ``tokens``,
``token_scores``, ``metrics``, ``interventions``, ``head_agreement``, ``example_verdicts``) gets the same
rows under new example ids (``<id>#<copy>``), so the tables stay consistent with each other. The tables of
samples (sanity checks, seed baseline) and of verdicts per slice keep the source run's rows: this measures
the report, not the judging. Each size is then rendered in a fresh process (the code of ``--code``, the
checkout by default), which prints the seconds to build the context, to render the HTML and the PDF, the
files' sizes, the process's CPU seconds (user and system: the figure to compare on shared cores) and its peak
resident memory.

Usage:
    python benchmarks/report_scale.py [--source DB] [--sizes 10000,100000] [--pdf-sizes 10000]
        [--code CHECKOUT] [--limit 40] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from flows.environment import quiet_libraries

quiet_libraries()

REPLICATED = ("examples", "tokens", "token_scores", "metrics", "interventions", "head_agreement", "example_verdicts")
"""The per-example tables whose rows are copied under new example ids."""

RENDER = """
import json, resource, sys, time
from datetime import UTC, datetime
from pathlib import Path
from tasks import report, store
db, out, pdf = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "pdf"
figures = {}
started = time.perf_counter()
with store.connect(db, read_only=True) as connection:
    context = report.build_context(connection, None, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
figures["context_s"] = time.perf_counter() - started
started = time.perf_counter()
html = report.render_html(context)
figures["html_s"] = time.perf_counter() - started
(out / "report.html").write_text(html, encoding="utf-8")
figures["html_mb"] = len(html.encode("utf-8")) / 1e6
summary = json.dumps(report.summary_document(context), indent=2, ensure_ascii=False)
figures["json_mb"] = len(summary.encode("utf-8")) / 1e6
if pdf:
    started = time.perf_counter()
    report.render_pdf(html, out / "report.pdf")
    figures["pdf_s"] = time.perf_counter() - started
    figures["pdf_mb"] = (out / "report.pdf").stat().st_size / 1e6
usage = resource.getrusage(resource.RUSAGE_SELF)
figures["cpu_s"] = usage.ru_utime + usage.ru_stime
figures["peak_rss_gb"] = usage.ru_maxrss / 1e6
print("figures:", json.dumps(figures))
"""
"""The rendering, run in a fresh process so that its peak memory is the report's alone."""


def audit(limit: int, folder: Path) -> Path:
    """Audit ``limit`` examples of the default preset into ``folder`` (HTML only); the database's path."""
    db = folder / "source.duckdb"
    command = [sys.executable, "-m", "flows.cli", "run", "--limit", str(limit), "--no-pdf", "--db", str(db)]
    subprocess.run([*command, "--out", str(folder / "source-report")], check=True)
    return db


def replicate(source: Path, target: Path, examples: int) -> int:
    """Copy ``source`` to ``target`` and grow its most recent run to ``examples`` examples; the source's count."""
    import duckdb

    shutil.copyfile(source, target)
    with duckdb.connect(str(target)) as connection:
        (run_id,) = connection.execute("SELECT run_id FROM runs ORDER BY updated_at DESC LIMIT 1").fetchone() or ("",)
        (stored,) = connection.execute("SELECT count(*) FROM examples WHERE run_id = ?", [run_id]).fetchone() or (0,)
        copies = -(-examples // stored)
        connection.execute(
            """CREATE TEMP TABLE copies AS
               SELECT example_id AS source, example_id || '#' || copy AS target
               FROM (SELECT example_id FROM examples WHERE run_id = ?), range(1, ?) AS r(copy)
               ORDER BY copy, example_id LIMIT ?""",
            [run_id, copies, examples - stored],
        )
        for table in REPLICATED:
            connection.execute(
                f"""INSERT INTO {table}
                    SELECT t.* REPLACE (c.target AS example_id) FROM {table} t JOIN copies c ON t.example_id = c.source
                    WHERE t.run_id = ?""",
                [run_id],
            )
        connection.execute("CHECKPOINT")
    return stored


def render(db: Path, folder: Path, code: Path, pdf: bool) -> dict[str, float]:
    """Render the run of ``db`` in a fresh process with the code of ``code``; its figures."""
    folder.mkdir(parents=True, exist_ok=True)
    environment = os.environ | {"PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", RENDER, str(db), str(folder), "pdf" if pdf else "html"],
        check=True,
        capture_output=True,
        text=True,
        env=environment,
        cwd=code,
    )
    line = next((line for line in done.stdout.splitlines() if "figures: " in line), None)
    if line is None:
        raise RuntimeError(f"the rendering printed no figures:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads(line.split("figures: ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Size and render time of the report of a dataset-wide review.")
    parser.add_argument("--source", type=Path, help="a database with a stored run [audit --limit examples first]")
    parser.add_argument("--limit", type=int, default=40, help="examples of the source audit [40]")
    parser.add_argument("--sizes", default="10000,100000", help="examples of each review [10000,100000]")
    parser.add_argument("--pdf-sizes", default="10000", help="the sizes that also render the PDF [10000]")
    checkout = Path(__file__).resolve().parents[1]
    parser.add_argument("--code", type=Path, default=checkout, help="checkout to render with [this one]")
    parser.add_argument("--keep", type=Path, help="keep the databases and reports in this folder")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    pdf_sizes = {int(size) for size in args.pdf_sizes.split(",") if size}

    folder = args.keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        source = args.source or audit(args.limit, folder)
        print(f"code: {args.code}")
        print(f"{'examples':>9} {'db MB':>8} {'html MB':>8} {'json MB':>8} {'context s':>10} {'html s':>7} "
              f"{'pdf s':>7} {'pdf MB':>7} {'cpu s':>7} {'peak RSS GB':>12}")  # fmt: skip
        for size in sizes:
            db = folder / f"review-{size}.duckdb"
            replicate(source, db, size)
            figures = render(db, folder / f"report-{size}", args.code, size in pdf_sizes)
            pdf = f"{figures['pdf_s']:7.1f} {figures['pdf_mb']:7.2f}" if "pdf_s" in figures else f"{'-':>7} {'-':>7}"
            print(
                f"{size:9d} {db.stat().st_size / 1e6:8.0f} {figures['html_mb']:8.2f} {figures['json_mb']:8.2f} "
                f"{figures['context_s']:10.1f} {figures['html_s']:7.1f} {pdf} {figures['cpu_s']:7.0f} "
                f"{figures['peak_rss_gb']:12.2f}",
                flush=True,
            )
            if args.keep is None:
                db.unlink()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
