"""Small pieces shared by the off-road adapters: split-list files and single-channel id labels.

Kept private (leading underscore) so the adapter registry does not import it as a dataset.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segunify.errors import SegunifyError
from segunify.jsonio import read_text


def require_dir(path: Path, what: str) -> Path:
    """A folder the publisher's layout must have; a clear error naming it when it is not there."""
    if not path.is_dir():
        raise SegunifyError(f"missing folder ({what})", path)
    return path


def list_lines(path: Path, what: str) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated fields of each non-empty line of a split list (``#`` lines skipped)."""
    for lineno, line in enumerate(read_text(path, f"split list ({what})").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield lineno, line.split()


def csv_rows(path: Path, columns: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV split file with a header naming at least ``columns``."""
    reader = csv.reader(read_text(path, f"split file ({what})").splitlines())
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise SegunifyError(f"header lacks column(s) {missing}; expected {','.join(columns)}", path, 1)
    for lineno, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise SegunifyError(f"expected {len(header)} fields, got {len(fields)}", path, lineno)
        yield lineno, {h: f.strip() for h, f in zip(header, fields, strict=True)}


def single_channel(raw: np.ndarray, path: Path | str) -> np.ndarray:
    """Id labels saved as grey RGB PNGs (all three channels equal) -> one channel; anything else is an
    error, because a colour PNG in an id folder means the wrong files were unpacked there."""
    if raw.ndim == 2:
        return raw
    if raw.ndim == 3 and raw.shape[2] == 3:
        if (raw[..., 0] == raw[..., 1]).all() and (raw[..., 0] == raw[..., 2]).all():
            return np.ascontiguousarray(raw[..., 0])
        raise SegunifyError("expected an id label (one channel or grey RGB), got a colour image", path)
    raise SegunifyError(f"expected a single-channel id label, got shape {raw.shape}", path)
