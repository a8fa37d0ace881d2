"""The ``segunify`` command line. Each area lives in its own module of this package and adds its
commands through ``register(app)``; this module only collects them and turns bad input into one line.

Exit codes: 0 ok, 1 bad input or a failed check (one line on stderr naming the file and the problem),
2 usage errors.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer
from rich.console import Console

from segunify.errors import SegunifyError

app = typer.Typer(
    name="segunify",
    help="Label space unification for semantic segmentation by knowledge distillation with ground-truth priors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code instead of printing tracebacks.

    Usage errors are handled by click in standalone mode (message + exit 2); bad input raised as
    :class:`SegunifyError` anywhere below a command becomes one line on stderr and exit 1.
    """
    try:
        app(args=argv, prog_name="segunify")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SegunifyError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
