"""The one error type users see: what went wrong and how to fix it."""

from __future__ import annotations


class AuditError(Exception):
    """A problem with the user's input or environment that the user can fix.

    The CLI prints ``problem`` and ``fix`` without a traceback; anything else that escapes is a bug.

    Args:
        problem: What is wrong, naming the offending value (a path, a column, a model id).
        fix: What to do about it, as a concrete action or command.
    """

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\nfix: {fix}")
        self.problem = problem
        self.fix = fix
