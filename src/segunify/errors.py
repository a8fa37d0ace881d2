"""One exception type for bad input, so the CLI can print one line and exit 1 (and one for a bad value of
a named field, which the CLI reports as a usage error of its flag)."""

from __future__ import annotations

from pathlib import Path


class SegunifyError(Exception):
    """Bad input that the user can fix: the message names the file and the problem."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class FieldError(SegunifyError):
    """A bad value of one named field of a library call (a setting, an argument): ``field`` and what is
    wrong with it (``problem``). The library names the field; the command line names its own flag for
    it instead (a usage error there)."""

    def __init__(self, field: str, problem: str, path: str | Path | None = None):
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}", path)
