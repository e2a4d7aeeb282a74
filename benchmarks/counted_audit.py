"""The audit's side of benchmarks/side_by_side.py: ``attention-audit run`` as a user runs it, with its passes counted.

Installs ``likeforlike.PassCounter`` on every model the run loads, then runs the command line unchanged.
When the results are stored (the batches written, verdicts judged, the run finished: the moment the
``audit`` flow calls the report flow) it writes the wall-clock time and the pass counts to MARKS.json;
the report is rendered after that and timed separately by the caller. Nothing of the audit, torch or
transformers is imported before the command line imports it (``after_import.ImportWatch``), so what the
command overlaps with its imports (its Prefect server's start) stays overlapped.

Usage (called by side_by_side.py): python benchmarks/counted_audit.py MARKS.json run [attention-audit run options]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from after_import import ImportWatch


def main() -> int:
    marks = Path(sys.argv[1])
    counted: list[Any] = []

    def count_passes(_: ModuleType) -> None:  # transformers' models load: torch is loaded too by then
        from likeforlike import PassCounter

        counted.append(PassCounter())
        counted[0].install()

    def mark_stored(module: Any) -> None:  # flows.audit_flow
        render = module.report

        def report(*args: Any, **kwargs: Any) -> Any:
            passes = counted[0].as_dict() if counted else {}
            marks.write_text(json.dumps({"stored": time.time(), "passes": passes}))
            return render(*args, **kwargs)

        module.report = report

    watch = ImportWatch().install()
    watch.when_loaded("transformers.modeling_utils", count_passes)
    watch.when_loaded("flows.audit_flow", mark_stored)
    from flows.cli import main as cli

    sys.argv = ["attention-audit", *sys.argv[2:]]
    status = cli()  # as the console script calls it
    stored = json.loads(marks.read_text())
    marks.write_text(json.dumps({**stored, "rendered": time.time()}))
    return status


if __name__ == "__main__":
    sys.exit(main())
