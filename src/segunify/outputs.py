"""One output policy for every command that writes (pseudo-label, train, predict, evaluate, mapping, demo,
export-dataset).

* **Ours only.** An output folder is claimed by writing its kind's marker (``.segunify-<kind>``) first;
  a non-empty folder without that marker is refused, naming it, and nothing in it is touched.
* **Apart from the inputs.** An output (folder or file) may neither lie inside nor contain any folder
  the command reads (a dataset root, the folders of its images and labels, a checkpoint), nor be one of
  its input files; paths are resolved, so symlinks are followed.
* **Never a silent replace.** A single output file (``--json``, ``--out X.csv``, ``--png``, ``--onnx``)
  that exists is replaced only with ``--overwrite``; the folder it goes to is probed for writability
  before the long part of a command starts.
* **One writer.** A long writer holds an advisory ``fcntl`` lock on ``<folder>/.lock``; a second run on
  the same folder fails naming the holder's pid. A POSIX lock, not ``flock``: forked DataLoader workers
  do not inherit it, so a killed run's lingering workers never block the restart.

Files themselves are written by :mod:`segunify.io` (temp file + rename, the user's umask).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from segunify.errors import SegunifyError
from segunify.io import atomic_write_json, write_problem

LOCK = ".lock"
MARKER_PREFIX = ".segunify-"
# marker kind -> what the folder is called in messages
KINDS = {
    "pseudo": "pseudo-label",
    "train": "training run",
    "predict": "prediction",
    "vis": "picture",
    "demo": "demo run",
    "export": "export",
}

Inputs = Iterable[tuple[str | Path, str]]  # (path the command reads, how a message names it)


def marker_name(kind: str) -> str:
    return MARKER_PREFIX + kind


def folder_kind(folder: str | Path) -> str | None:
    """The kind of segunify output folder ``folder`` is (its marker), or ``None``."""
    for kind in KINDS:
        if (Path(folder) / marker_name(kind)).is_file():
            return kind
    return None


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_apart(outs: Sequence[str | Path], inputs: Inputs, noun: str = "output folder") -> None:
    """Refuse an output inside, equal to or containing an input (resolved, links followed), and two
    outputs of which one holds the other. ``noun`` names the outputs in the message."""
    resolved = [_resolved(o) for o in outs]
    for path, what in inputs:
        src = _resolved(path)
        for out, res in zip(outs, resolved, strict=True):
            if res == src and src.is_file():
                raise SegunifyError(f"{noun} is {what}: choose another place", out)
            if res == src or src in res.parents:
                raise SegunifyError(
                    f"{noun} lies inside {what} ({src}); segunify never writes there: choose a place "
                    "outside it",
                    out,
                )
            if res in src.parents:
                raise SegunifyError(f"{noun} contains {what} ({src}): choose another place", out)
    for i, a in enumerate(resolved):
        for b in resolved[i + 1 :]:
            if a == b or a in b.parents or b in a.parents:
                many = "two" if len(outs) == 2 else "all"
                raise SegunifyError(
                    f"the {many} {noun}s must be apart (neither inside the other)", outs[i + 1]
                )


def sample_inputs(root: str | Path, samples: Iterable = ()) -> list[tuple[Path, str]]:
    """A dataset's root and the folders of its samples' images and labels (which may lie elsewhere
    through links), as :func:`check_apart` inputs."""
    inputs = [(Path(root), "the dataset root")]
    folders = {p.parent for s in samples for p in (s.image, s.label) if p is not None}
    inputs += [(f, "an input folder of the dataset") for f in sorted(folders)]
    return inputs


def claim_folder(out: str | Path, kind: str, content: dict | None = None) -> Path:
    """Make ``out`` a ``kind`` output folder (created if needed, marker written first), or refuse a
    file, a non-empty folder without the marker, or another kind's folder; returns the folder."""
    out, noun = Path(out), KINDS[kind]
    marker = out / marker_name(kind)
    if out.exists() and not out.is_dir():
        raise SegunifyError("output exists and is not a folder", out)
    if out.is_dir() and not marker.is_file():
        other = folder_kind(out)
        if other is not None:
            raise SegunifyError(
                f"output folder is a segunify {KINDS[other]} folder, not a {noun} folder: choose another", out
            )
        if any(out.iterdir()):
            raise SegunifyError(
                f"output folder is not empty and not a segunify {noun} folder (no {marker.name} marker); "
                "refusing to write into it: choose a new or empty folder",
                out,
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegunifyError(f"cannot create output folder: {exc.strerror or exc}", out) from None
    if not marker.is_file():
        atomic_write_json(marker, content if content is not None else {"kind": kind})
    return out


def check_output_file(path: str | Path, overwrite: bool = False, inputs: Inputs = ()) -> None:
    """May the single file ``path`` be written? Not over an existing one without ``overwrite``, not over
    a folder, not inside (or as) an input, and only where a probe file can be written."""
    path = Path(path)
    if path.is_dir():
        raise SegunifyError("output is a folder, not a file", path)
    for source, what in inputs:
        if _resolved(source) == _resolved(path):
            raise SegunifyError(f"output is {what}: choose another file", path)
    check_apart([path], [(s, w) for s, w in inputs if not Path(s).is_file()], noun="output file")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise SegunifyError("output exists; pass --overwrite to replace it", path)
    problem = write_problem(path.parent)
    if problem:
        raise SegunifyError(f"cannot write here ({problem})", path)


@contextmanager
def folder_lock(folder: str | Path, who: str) -> Iterator[None]:
    """Hold ``folder``'s advisory lock, or fail naming the pid of the ``who`` run that holds it."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SegunifyError(f"cannot create lock file: {exc.strerror or exc}", path) from None
    try:
        try:  # a POSIX lock: held by this process only, not by forked DataLoader workers
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise SegunifyError(f"cannot lock: {exc.strerror or exc}", path) from None
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise SegunifyError(
                f"another {who} run (pid {holder}) is writing to this folder; wait for it to end "
                "or use another output folder",
                folder,
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise SegunifyError(f"cannot write lock file: {exc.strerror or exc}", path) from None
        yield
    finally:
        os.close(fd)  # releases the lock


__all__ = [
    "KINDS",
    "Inputs",
    "LOCK",
    "check_apart",
    "check_output_file",
    "claim_folder",
    "folder_kind",
    "folder_lock",
    "marker_name",
    "sample_inputs",
]
