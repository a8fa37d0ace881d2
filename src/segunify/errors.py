"""One exception type for bad input, so the CLI can print one line and exit 1."""

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
