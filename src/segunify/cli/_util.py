"""Small helpers shared by the CLI modules: option parsing and rich tables/progress bars."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from segunify.errors import SegunifyError


def parse_options(pairs: list[str] | None, flag: str = "--opt") -> dict[str, str]:
    """``["key=value", ...]`` -> dict, for dataset options passed through the CLI."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SegunifyError(f"{flag} expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def swatch(color: tuple[int, int, int]) -> str:
    r, g, b = color
    return f"[on rgb({r},{g},{b})]    [/] {r:3d} {g:3d} {b:3d}"


def progress_bar(**kwargs) -> Progress:
    """One progress-bar style for every long command: count, rate, elapsed and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        **kwargs,
    )


def table(*columns: str, title: str | None = None) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    return t
