"""Where data and weights live: one setting, ``SEGUNIFY_DATA``.

``SEGUNIFY_DATA`` names a folder holding ``data/`` (datasets in their publishers' layouts) and
``weights/`` (pretrained weights). Without it, ``../shared`` next to the current directory or next to
the source checkout is used when it exists. Nothing is downloaded at run time; ``segunify fetch`` does
that explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

from segunify.errors import SegunifyError

ENV = "SEGUNIFY_DATA"


def shared_root(required: bool = True) -> Path | None:
    env = os.environ.get(ENV)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise SegunifyError(f"{ENV} points to a missing folder", root)
        return root
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = (base / ".." / "shared").resolve()
        if candidate.is_dir():
            return candidate
    if required:
        raise SegunifyError(
            f"no data folder: set {ENV} to a folder with data/ and weights/, or run 'segunify fetch --dest DIR'"
        )
    return None


def data_path(*parts: str) -> Path:
    """A path under ``<shared>/data`` with a clear error (and the fix) when it is missing."""
    path = shared_root() / "data" / Path(*parts)  # type: ignore[operator]
    if not path.exists():
        raise SegunifyError(f"missing; set {ENV} or run 'segunify fetch' to download it", path)
    return path


def weights_path(name: str) -> Path:
    path = shared_root() / "weights" / name  # type: ignore[operator]
    if not path.exists():
        raise SegunifyError(f"missing weights; set {ENV} or run 'segunify fetch' to download them", path)
    return path
