"""The environment that keeps the libraries quiet: one home for the command line, tests and benchmarks.

Prefect's analytics and its server's logs, Hugging Face's progress bars and telemetry, the tokenizers'
fork warning and transformers' advisory warnings are turned off; a value already in the environment wins.
"""

from __future__ import annotations

import os

QUIET_LIBRARIES: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_SERVER_LEVEL": "CRITICAL",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
"""Environment variables and the values that quiet the libraries."""


def quiet_libraries(**extra: str) -> None:
    """Set each of ``QUIET_LIBRARIES`` and ``extra`` (which wins over it) unless already set.

    Call it before Prefect, transformers or the Hugging Face hub are imported: they read some of these
    once, at import.

    Args:
        **extra: More variables, or other values, for this caller (e.g. ``HF_HUB_OFFLINE="1"``).
    """
    for name, value in {**QUIET_LIBRARIES, **extra}.items():
        os.environ.setdefault(name, value)
