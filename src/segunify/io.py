"""Writing files safely: every file segunify writes goes through here.

A temp file in the same folder + ``os.replace`` means a reader (or a resumed run) never sees half a
file; the temp file is created with the user's umask applied, like ``open()`` would, so outputs in a
team's shared folder stay readable (``mkstemp`` alone gives 0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from segunify.errors import SegunifyError


def _read_umask() -> int:
    """The process umask without changing it for other threads (Linux reports it in /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file: 0666 minus the umask, as ``open()`` gives."""
    return 0o666 & ~_read_umask()


def dir_mode() -> int:
    """Mode of a new folder: 0777 minus the umask, as ``mkdir`` gives (``mkdtemp`` alone gives 0700)."""
    return 0o777 & ~_read_umask()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights files, checkpoints, downloads)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _replacing(path: Path, what: str) -> Iterator[BinaryIO]:
    """A temp file in ``path``'s folder, renamed over ``path`` when the block ends without error; on any
    failure no temp file is left and an OS error becomes one :class:`SegunifyError` naming ``path``."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise SegunifyError(f"cannot {what}: {exc.strerror or exc}", path) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file.

    A write that fails (read-only folder, disk full) leaves no temp file behind and raises one
    :class:`SegunifyError` naming ``path``.
    """
    with _replacing(Path(path), "write file") as f:
        f.write(data)


def atomic_copy(source: str | Path, path: str | Path, chunk: int = 1 << 20) -> None:
    """Copy ``source`` to ``path`` through a temp file and rename; an existing ``path`` (a file or a
    link) is replaced, never written through."""
    with _replacing(Path(path), f"copy {source}") as f, open(source, "rb") as src:
        while block := src.read(chunk):
            f.write(block)


def atomic_symlink(target: str | Path, path: str | Path) -> None:
    """A symbolic link ``path`` -> ``target``, made under a temp name and renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SegunifyError(f"cannot link {target}: {exc.strerror or exc}", path) from exc


def write_problem(folder: str | Path) -> str | None:
    """Why nothing can be written in ``folder`` (created if needed), or ``None``: a probe file is
    written and removed, so a long job fails in its first second, not after its last."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def check_writable(folder: str | Path, target: str | Path | None = None) -> None:
    """One line naming ``target`` (the file to be written in ``folder``, else the folder) when
    ``folder`` is not writable."""
    problem = write_problem(folder)
    if problem:
        raise SegunifyError(f"cannot write here ({problem})", target or folder)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data, **kwargs) -> None:
    """JSON with a trailing newline; ``kwargs`` go to :func:`json.dumps` (e.g. ``indent``, ``default``)."""
    atomic_write_text(path, json.dumps(data, **kwargs) + "\n")


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 single-channel array or a uint8 RGB array."""
    import cv2  # here, not at the top: every command imports this module, few write PNGs

    if array.ndim == 3:
        array = np.ascontiguousarray(array[:, :, ::-1])
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise SegunifyError(f"cannot encode array of shape {array.shape} and dtype {array.dtype} as PNG")
    return buf.tobytes()


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Atomically write an index (``[H, W]``) or RGB (``[H, W, 3]``) PNG."""
    atomic_write_bytes(path, encode_png(array))


def write_index_png(path: str | Path, train_ids: np.ndarray) -> None:
    if train_ids.dtype != np.uint8:
        raise SegunifyError(f"index labels must be uint8, got {train_ids.dtype}", path)
    write_png(path, train_ids)
