"""One problem of a config file, as the installer reads it: ``FILE:LINE:COL: key.path: message``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, with its position (1-based lines and columns)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ProblemError(Exception):
    """A file that cannot be read or parsed; ``problems`` lists every reason found.

    ``parsed`` is the document as read despite the problems when they leave it readable (a
    duplicated key keeps its first value), so a checker can go on and report the file's other
    problems in the same run; ``None`` when nothing could be read.
    """

    def __init__(self, problems: list[Problem], parsed: object = None) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.parsed = parsed
