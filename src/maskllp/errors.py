"""User-facing errors.

Every failure caused by what a user gave the tool (a file, a row, a setting) is raised as an
:class:`InputError` (or a subclass). The command line prints it as one line, ``error: <message>``,
and exits with status 2; no traceback. Anything else escaping to the command line is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike


class MaskllpError(Exception):
    """Base class of errors that the command line reports in one line (exit status 2)."""


class InputError(MaskllpError):
    """A problem with something the user gave: ``"<source>: <where>: <problem>"``.

    ``source`` is the file (or setting) at fault, ``where`` an optional position inside it
    ("row 4", "feature 12", "key detector.sigma"), ``problem`` says what is wrong.
    """

    def __init__(
        self, source: str | PathLike[str] | None, problem: str, where: str | None = None
    ) -> None:
        self.source = None if source is None else str(source)
        self.where = where
        self.problem = problem
        parts = [p for p in (self.source, where, problem) if p]
        super().__init__(": ".join(parts))


class ProblemList(MaskllpError):
    """Several input problems found at once (validation reports every problem, not the first).

    ``str()`` gives one line per problem, after the summary line when there are several (a single
    problem is its own line); the command line prints them all and exits with 2.
    """

    def __init__(self, problems: Iterable[InputError | str], summary: str | None = None) -> None:
        self.problems = [str(p) for p in problems]
        self.summary = summary
        head = [summary] if summary and len(self.problems) != 1 else []
        super().__init__("\n".join(head + self.problems))


class NonFiniteOutputError(MaskllpError):
    """A network gave NaN or infinite outputs (damaged weights, or training that diverged): never a
    result. ``str()`` names the model where the caller knows it."""
