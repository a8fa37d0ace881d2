"""Small helpers shared by the CLI modules: option parsing, rich tables/progress bars, and starting the
N CPU ranks that ``accelerate launch --cpu`` does not start (``train``, ``pseudo-label``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from segunify.errors import FieldError, SegunifyError


def parse_options(pairs: list[str] | None, flag: str = "--opt") -> dict[str, str]:
    """``["key=value", ...]`` -> dict, for dataset options passed through the CLI; a malformed pair is a
    usage error (exit 2)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"{flag} expects key=value, got {pair!r}", param_hint=flag)
        out[key.strip()] = value.strip()
    return out


def check_overrides(items: list[str] | None) -> list[str]:
    """``--set key=value`` items checked for their form (a usage error, exit 2); whether the key exists
    is the config's business (exit 1, naming the file)."""
    from segunify.config import parse_override

    for item in items or []:
        try:
            parse_override(item)
        except SegunifyError as exc:
            raise typer.BadParameter(str(exc).removeprefix("override "), param_hint="--set") from None
    return list(items or [])


@contextmanager
def flag_errors(**flags: str) -> Iterator[None]:
    """A library's :class:`FieldError` raised inside as a usage error (exit 2) of the command's flag for
    that field: ``flags[field]``, else ``--`` + the field's name with dashes (``batch_size`` ->
    ``--batch-size``)."""
    try:
        yield
    except FieldError as exc:
        flag = flags.get(exc.field, "--" + exc.field.replace("_", "-"))
        raise typer.BadParameter(exc.problem, param_hint=flag) from None


MAX_PIXELS_HELP = (
    "refuse images whose header declares more pixels, before decoding (default 67108864 = 8192x8192; "
    "or set SEGUNIFY_MAX_PIXELS)"
)


def set_max_pixels(value: int | None) -> None:
    """``--max-pixels N`` for this run: the limit of :func:`segunify.labels.max_pixels`, set in the
    environment so that DataLoader worker processes apply it too."""
    from segunify.labels import MAX_PIXELS_ENV

    if value is not None:
        os.environ[MAX_PIXELS_ENV] = str(value)


def parse_size(text: str | None, flag: str = "--size") -> tuple[int, int] | None:
    """``"H,W"`` (or ``HxW``) -> ``(H, W)``; None stays None."""
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise typer.BadParameter(f"expected H,W (e.g. 512,1024), got {text!r}", param_hint=flag) from None
    if h < 1 or w < 1:
        raise typer.BadParameter(f"sizes must be positive, got {text!r}", param_hint=flag)
    return h, w


def parse_triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """``"0.485,0.456,0.406"`` -> three floats (per RGB channel); None stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise typer.BadParameter(f"expected three numbers R,G,B, got {text!r}", param_hint=flag)
    return values  # type: ignore[return-value]


def parse_scales(text: str | None, flag: str = "--scales") -> tuple[float, ...] | None:
    """``"0.75,1,1.25"`` -> ``(0.75, 1.0, 1.25)``; None stays None."""
    if text is None:
        return None
    try:
        scales = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected numbers like 0.75,1,1.25, got {text!r}", param_hint=flag
        ) from None
    if not scales or any(v <= 0 for v in scales):
        raise typer.BadParameter(f"scales must be positive, got {text!r}", param_hint=flag)
    return scales


def make_dataset(name: str, root: str, options: dict[str, str] | None = None):
    """``create_dataset`` with a one-line error for an option the adapter does not take."""
    from segunify.datasets import create_dataset

    if not options:
        return create_dataset(name, root)
    try:
        return create_dataset(name, root, **options)
    except TypeError as exc:
        raise SegunifyError(f"dataset {name!r} does not accept option(s) {sorted(options)}: {exc}") from None


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


def accelerate_cpu_processes() -> int:
    """Processes asked of ``accelerate launch --cpu --num_processes N``.

    Accelerate's launcher starts only ONE process for ``--cpu`` (several CPU processes need mpirun), and
    says so nowhere; it does export ``MASTER_PORT`` when N > 1. Read N from the launcher's command line
    so that we can start the N processes ourselves with torch's elastic launcher (gloo).
    """
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true") or "MASTER_PORT" not in env:
        return 1
    if any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")):
        return 1
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return 1
    if "launch" not in argv:
        return 1
    from accelerate.commands.launch import launch_command_parser

    args, _ = launch_command_parser().parse_known_args(argv[argv.index("launch") + 1 :])
    return int(args.num_processes or 1) if args.num_machines in (None, 1) else 1


def relaunch(n: int) -> int:
    """Start ``n`` CPU ranks of the current command with torch's elastic launcher (gloo)."""
    import torch.distributed.run as elastic

    from segunify.cli import err_console

    err_console.print(
        f"accelerate launch --cpu starts one process; starting {n} CPU processes (gloo) instead"
    )
    os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    elastic.main(
        [
            f"--nproc_per_node={n}",
            f"--master_addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
            f"--master_port={os.environ['MASTER_PORT']}",
            "-m",
            "segunify",
            *sys.argv[1:],
        ]
    )
    return 0
