"""The audit's side of benchmarks/side_by_side.py: ``attention-audit run`` as a user runs it, with its passes counted.

Installs ``likeforlike.PassCounter`` on every model the run loads, then runs the command line unchanged.
When the results are stored (the batches written, verdicts judged, the run finished: the moment the
``audit`` flow calls the report flow) it writes the wall-clock time and the pass counts to MARKS.json;
the report is rendered after that and timed separately by the caller.

Usage (called by side_by_side.py): python benchmarks/counted_audit.py MARKS.json run [attention-audit run options]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from likeforlike import PassCounter


def main() -> int:
    marks = Path(sys.argv[1])
    from flows.environment import quiet_libraries

    quiet_libraries()  # as the command line does, before Prefect is imported: it reads them at import
    counter = PassCounter()
    counter.install()
    import flows.audit_flow
    from flows.cli import main as cli

    render = flows.audit_flow.report

    def report(*args: Any, **kwargs: Any) -> Any:
        marks.write_text(json.dumps({"stored": time.time(), "passes": counter.as_dict()}))
        return render(*args, **kwargs)

    flows.audit_flow.report = report  # type: ignore[assignment]
    status = cli(sys.argv[2:])
    stored = json.loads(marks.read_text())
    marks.write_text(json.dumps({**stored, "rendered": time.time()}))
    return status


if __name__ == "__main__":
    sys.exit(main())
