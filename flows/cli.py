"""``attention-audit``: the command line.

``run`` audits a model on a corpus (the embedded default when nothing is named) and renders the
report; ``report`` re-renders a stored run; ``runs`` lists the runs of a database; ``build-default``
builds a preset model; ``methods`` lists the explanation methods. Problems the user can fix are printed
as ``error:`` and ``fix:`` lines with exit status 2, never as a bare traceback; a run that finished but
recorded failed examples exits with status 3, one that failed a gate check (``--require``) with 4.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.environment import quiet_libraries
from tasks.pipeline.interrupts import interrupted, record_interrupts

if TYPE_CHECKING:
    from flows.server import PrefectAPI
    from tasks.config import AuditConfig

EXIT_INPUT = 2
"""Exit status of a problem the user can fix (``error:`` / ``fix:`` printed)."""
EXIT_FAILURES = 3
"""Exit status of a run that finished but recorded failed examples (run again to retry them)."""
EXIT_GATE = 4
"""Exit status of a run that finished but failed a check of its gate (``--require``)."""
EXIT_INTERRUPTED = 130
"""Exit status of a run interrupted (Ctrl-C): what was finished is stored; the same command resumes."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``attention-audit`` console script (``argv`` None: the command line's arguments).

    As the console script, the process ends right after: the objects left are then frozen out of the
    garbage collector (``gc.freeze``), so that the interpreter's exit does not walk the object graphs of
    torch and transformers once more (about 1 s here); the operating system reclaims the memory anyway.
    Interrupted (Ctrl-C), it ends at once (``os._exit``) rather than wait for a batch still computing.
    """
    try:
        status = _command(argv)
    finally:
        if argv is None:
            gc.freeze()
    if argv is None and status == EXIT_INTERRUPTED:
        # A batch may still be computing in a worker thread; the interpreter's exit would wait for it (its
        # result is not stored anyway). Everything finished is committed, so end now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _command(argv: Sequence[str] | None) -> int:
    record_interrupts()
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from tasks.errors import AuditError
    from tasks.flags import flag_for

    try:
        return int(args.handler(args) or 0)
    except AuditError as error:
        print(f"error: {error.problem}\nfix: {error.fix}", file=sys.stderr)
        return EXIT_INPUT
    except ValidationError as error:
        problems = "; ".join(flag_for(e["loc"]) + ": " + e["msg"] for e in error.errors())
        print(
            f"error: invalid options: {problems}\nfix: see attention-audit {args.command} --help",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        if interrupted():  # a Ctrl-C that surfaced as another exception (tasks.pipeline.interrupts)
            return _interrupted()
        raise


def _interrupted() -> int:
    print("interrupted: finished batches are stored; run the same command again to resume", file=sys.stderr)
    return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``run``'s options come from the configuration's fields (``tasks.flags``)."""
    from tasks.config import OutputSettings

    db, out, rows = (OutputSettings.model_fields[name].default for name in ("db", "out_dir", "example_rows"))
    parser = argparse.ArgumentParser(
        prog="attention-audit",
        description="Audit whether a transformer classifier's attention faithfully explains its predictions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands.add_parser("run", help="audit a model on a corpus and render the report"))

    report = commands.add_parser("report", help="render the report of a stored run")
    report.add_argument("--db", type=Path, default=db, help="DuckDB file")
    report.add_argument("--run", default=None, help="run id [the most recently updated run]")
    report.add_argument("--out", type=Path, default=out, help="report folder")
    report.add_argument("--no-pdf", action="store_true", help="render only the HTML report")
    described = OutputSettings.model_fields["example_rows"].description
    report.add_argument("--example-rows", type=int, default=rows, help=f"{described} [{rows}]")
    report.set_defaults(handler=_report)

    runs = commands.add_parser("runs", help="list the runs stored in a database")
    runs.add_argument("--db", type=Path, default=db, help="DuckDB file")
    runs.set_defaults(handler=_runs)

    build = commands.add_parser("build-default", help="build (or find in the cache) a preset's fine-tuned model")
    build.add_argument("--preset", default="movie-snippets", help="preset name [movie-snippets]")
    build.add_argument("--max-train-examples", type=int, default=None, help="train on at most N examples (quick build)")
    build.add_argument("--epochs", type=int, default=None, help="training epochs [preset's]")
    build.add_argument(
        "--seed",
        type=int,
        default=None,
        help="training seed [preset's]: another seed builds another fine-tuning for --seed-models "
        "(the preset's extra seeds are what --seed-models preset uses)",
    )
    build.add_argument(
        "--training-precision",
        choices=("auto", "float32", "bfloat16"),
        default=None,
        help="precision of the training passes [auto: mixed bfloat16 where the CPU multiplies it natively, "
        "float32 elsewhere]; each is its own cached model",
    )
    build.set_defaults(handler=_build_default)

    compare = commands.add_parser("compare", help="what moved between two stored runs")
    compare.add_argument("before", help="run id of the earlier audit")
    compare.add_argument("after", help="run id of the later audit")
    compare.add_argument("--db", type=Path, default=db, help="DuckDB file")
    compare.set_defaults(handler=_compare)

    export = commands.add_parser("export", help="write a run's token scores (and metrics) in the import schema")
    export.add_argument("--db", type=Path, default=db, help="DuckDB file")
    export.add_argument("--run", default=None, help="run id [the most recently updated run]")
    export.add_argument("--out", type=Path, required=True, help="scores file (.parquet or .jsonl)")
    export.add_argument("--metrics", type=Path, default=None, help="also write the per-example metrics here")
    export.set_defaults(handler=_export)

    methods = commands.add_parser("methods", help="list the explanation methods")
    methods.set_defaults(handler=_methods)
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    """``run``'s options: one per ``tasks.flags.FLAGS`` (unset ones are None: the field keeps its default)."""
    from tasks.flags import FLAGS, SWITCHES

    for flag in FLAGS:
        if flag.kind in SWITCHES:
            run.add_argument(flag.flag, dest=flag.flag, action="store_true", default=None, help=flag.help)
        else:
            metavar = None if flag.choices else flag.flag.lstrip("-").replace("-", "_").upper()
            run.add_argument(
                flag.flag, dest=flag.flag, default=None, choices=flag.choices, help=flag.help, metavar=metavar
            )
    run.add_argument(
        "--preset",
        default=None,
        help="audit a built-in default: sets --model and --dataset to the preset (movie-snippets, bbc-news) "
        "and its split and max length, unless given",
    )
    run.set_defaults(handler=_run)


def config_from_args(args: argparse.Namespace) -> Any:
    """Build the validated ``AuditConfig`` from ``run``'s options (unset options keep their defaults)."""
    from tasks.config import AuditConfig
    from tasks.flags import FLAGS, SWITCHES

    sections: dict[str, dict[str, Any]] = {}
    for flag in FLAGS:
        raw = getattr(args, flag.flag)
        if raw is None:
            continue
        section, _, name = flag.field.rpartition(".")
        value: Any
        if flag.kind in SWITCHES:
            value = SWITCHES[flag.kind]
        elif flag.kind == "list":
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        elif flag.kind == "floats":
            value = tuple(_number(part, flag.flag) for part in raw.split(",") if part.strip())
        elif flag.kind == "ints":
            value = tuple(int(_number(part, flag.flag, integer=True)) for part in raw.split(",") if part.strip())
        elif flag.kind == "int":
            value = int(_number(raw, flag.flag, integer=True))
        elif flag.kind == "float":
            value = _number(raw, flag.flag)
        else:
            value = raw
        if section:
            sections.setdefault(section, {})[name] = value
        else:
            sections[name] = value
    return AuditConfig.model_validate(sections)


def _run(args: argparse.Namespace) -> int:
    config = config_from_args(_with_preset(args))  # invalid options start nothing
    from flows.server import PrefectAPI

    # Prefect's temporary server starts first, to come up while Prefect, torch and the model load here.
    with PrefectAPI() as api:
        return _audit(_preset_defaults(config), api)


def _audit(config: AuditConfig, api: PrefectAPI) -> int:
    """Plan the run (every input problem surfaces here), then run the ``audit`` flow against ``api``."""
    from tasks.pipeline.plan import plan_run

    plan = plan_run(config)  # pre-flight: every input problem surfaces here, before any flow runs
    _check_database(config.output.db)
    _check_report_folder(config.output.out_dir)
    print(f"run {plan.run_id}: {len(plan.examples)} examples of {config.data.dataset} ({config.data.split})")
    if "sample" in plan.manifest["data"]:
        from tasks.verdict.sample_size import sample_words

        print(f"sample: {len(plan.examples)} examples, {sample_words(plan.manifest['data']['sample'])}")
    for item in plan.not_applicable:
        print(f"warning: {item.kind} {item.name} is not applicable to {item.reason}; the rest of the audit runs",
              file=sys.stderr)  # fmt: skip
    from flows.audit_flow import audit
    from tasks.pipeline.runners import check_execution
    from tasks.verdict.gate import GateFailed

    try:
        with api.connected():
            check_execution(config.execution)  # pre-flight: a Dask run needs prefect-dask and a Prefect server
            outcome = audit(config)
    except GateFailed as failed:
        print("gate failed:\n" + "\n".join(f"  - {failure}" for failure in failed.failures), file=sys.stderr)
        print(f"the audit finished and its results are stored: {failed.outcome['db']}", file=sys.stderr)
        return EXIT_GATE
    print(
        f"examples: {outcome.examples} ({outcome.computed} computed, {outcome.cached} from Prefect's result cache, "
        f"{outcome.reused} already stored, {outcome.failed} failed)"
    )
    if outcome.failed:
        print(
            f"warning: {outcome.failed} example(s) failed; the report and the failures table list them. "
            "Run the same command again to retry them.",
            file=sys.stderr,
        )
    print(f"database: {outcome.db.resolve()}")
    if outcome.report is not None:
        print(f"html report: {outcome.report.html.resolve()}")
        if outcome.report.pdf is not None:
            print(f"pdf report: {outcome.report.pdf.resolve()}")
        print(f"json summary: {outcome.report.summary.resolve()}")
    return EXIT_FAILURES if outcome.failed else 0


def _with_preset(args: argparse.Namespace) -> argparse.Namespace:
    """``--preset NAME``: the preset's model and corpus, where ``--model`` and ``--dataset`` are not given."""
    if args.preset is None:
        return args
    from tasks.errors import AuditError
    from tasks.model.presets import PRESETS

    if args.preset not in PRESETS:
        raise AuditError(f"unknown preset {args.preset!r}", f"use one of: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    for flag, value in (("--model", preset.name), ("--dataset", preset.corpus)):
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    return args


def _preset_defaults(config: Any) -> Any:
    """Apply a preset's audit defaults (split, max length, units) where the user left them unset."""
    from tasks.model.presets import PRESETS

    preset = PRESETS.get(config.model.name_or_path)
    if preset is None or config.data.dataset != preset.corpus:
        return config
    data, methods = config.data, config.methods
    changes = {}
    if "max_length" not in data.model_fields_set:
        changes["max_length"] = preset.audit_max_length
    if "split" not in data.model_fields_set:
        changes["split"] = preset.audit_split
    units = {} if "units" in methods.model_fields_set else {"units": preset.audit_units}
    return config.model_copy(
        update={"data": data.model_copy(update=changes), "methods": methods.model_copy(update=units)}
    )


def _check_database(db: Path, run_id: str | None = None, *, read_only: bool = False) -> None:
    """Pre-flight: open the database (and, to report, find the run) before Prefect starts.

    The same problems found inside a flow would also be logged by Prefect with a traceback.

    Raises:
        AuditError: The database cannot be opened or written, or has no such run with stored examples.
    """
    from tasks import store
    from tasks.errors import AuditError

    with store.connect(db, read_only=read_only) as connection:
        if read_only:
            run = store.read_run(connection, run_id)
            if not store.finished_example_ids(connection, run["run_id"]):
                raise AuditError(
                    f"the run {run['run_id']} has no stored examples yet", "run (or resume) the audit first"
                )


def _check_report_folder(folder: Path) -> None:
    """Pre-flight: the report folder exists (or can be made) and is writable.

    Raises:
        AuditError: It cannot be created or written.
    """
    from tasks.errors import AuditError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AuditError(
            f"cannot create the report folder {folder}: {error.strerror}", "choose a writable folder with --out"
        ) from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AuditError(f"the report folder {folder} is not writable", "choose a writable folder with --out")


def _report(args: argparse.Namespace) -> int:
    from flows.report_flow import report
    from flows.server import PrefectAPI
    from tasks.errors import AuditError

    _check_database(args.db, args.run, read_only=True)
    _check_report_folder(args.out)
    if args.example_rows < 1:
        raise AuditError(
            f"--example-rows must be at least 1, not {args.example_rows}",
            "give the most rows the report's example table may show",
        )
    with PrefectAPI() as api, api.connected():
        paths = report(args.db, args.run, args.out, not args.no_pdf, args.example_rows)
    print(f"html report: {paths.html.resolve()}")
    if paths.pdf is not None:
        print(f"pdf report: {paths.pdf.resolve()}")
    print(f"json summary: {paths.summary.resolve()}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from tasks import store

    with store.connect(args.db, read_only=True) as connection:
        runs = store.read_runs(connection)
    if runs.empty:
        print("no runs")
        return 0
    for row in runs.itertuples():
        print(f"{row.run_id}  {row.status:8}  {row.examples:6d} examples  updated {str(row.updated_at)[:19]}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from tasks import store
    from tasks.report.comparison import EVIDENCE, compare_runs

    with store.connect(args.db, read_only=True) as connection:
        comparison = compare_runs(connection, args.before, args.after)
    print("\n".join(comparison.sentences()))
    print(f"\n{'explanation':22} {'evidence':40} {'before':>8} {'after':>8}  difference [95 % interval]")
    for movement in comparison.movements:
        marker = "*" if movement.moved else " "
        print(
            f"{movement.method:22} {EVIDENCE[movement.evidence][:40]:40} {movement.before:8.3f} {movement.after:8.3f} "
            f"{marker} {movement.difference:+.3f}"
        )
    for method, kind, value, before, after in comparison.slice_changes:
        print(f"slice {kind}: {value}: {method} {before} -> {after}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tasks import store
    from tasks.explain import imported

    with store.connect(args.db, read_only=True) as connection:
        run_id = store.read_run(connection, args.run)["run_id"]
        tokens = store.read_table(connection, "tokens", run_id)
        scores = store.read_table(connection, "token_scores", run_id)
        metrics = store.read_table(connection, "metrics", run_id) if args.metrics else None
    path = imported.write_rows(imported.export_rows(tokens, scores), args.out)
    print(f"token scores of run {run_id}: {path.resolve()}")
    if metrics is not None:
        written = imported.write_rows(metrics.drop(columns=["run_id"]), args.metrics)
        print(f"metrics of run {run_id}: {written.resolve()}")
    return 0


def _build_default(args: argparse.Namespace) -> int:
    from tasks.errors import AuditError
    from tasks.model.presets import PRESETS, ensure_model, preset_with_training, read_manifest

    if args.preset not in PRESETS:
        raise AuditError(f"unknown preset {args.preset!r}", f"use one of: {', '.join(PRESETS)}")
    preset = PRESETS[args.preset]
    overrides = {
        k: v
        for k, v in {
            "max_train_examples": args.max_train_examples,
            "epochs": args.epochs,
            "seed": args.seed,
            "precision": args.training_precision,
        }.items()
        if v is not None
    }
    if overrides:
        preset = preset_with_training(preset, **overrides)
    folder = ensure_model(preset, progress=print)
    manifest = read_manifest(folder) or {}
    print(f"model: {folder}")
    print(f"training seed: {manifest.get('training', {}).get('seed')}")
    print(f"training precision: {manifest.get('training', {}).get('precision', 'float32')}")
    print("accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in manifest.get("accuracy", {}).items()))
    return 0


def _methods(args: argparse.Namespace) -> int:
    from tasks.explain.registry import describe_methods

    print("\n".join(describe_methods()))
    return 0


def _number(raw: str, flag: str, *, integer: bool = False) -> float:
    from tasks.errors import AuditError

    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value or (integer and not value.is_integer()):
        kind = "a whole number" if integer else "a number"
        raise AuditError(f"{flag} takes {kind}, not {raw!r}", f"pass {flag} with {kind}")
    return value


if __name__ == "__main__":
    sys.exit(main())
