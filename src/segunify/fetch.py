"""Download the public originals of the demo data and weights, with size and sha256 checks.

The manifest (``fetch_manifest.json``, made by ``scripts/make_fetch_manifest.py``) names, per file,
the raw URL at a fixed commit of the public repository, the destination below ``SEGUNIFY_DATA``,
the size and the sha256. This is the only code in segunify that touches the network, and only when
the user runs ``segunify fetch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from segunify.errors import SegunifyError
from segunify.io import file_mode, sha256_file


@dataclass(frozen=True)
class RemoteFile:
    group: str
    url: str
    dest: str
    size: int
    sha256: str


def load_manifest() -> dict:
    return json.loads((resources.files("segunify") / "fetch_manifest.json").read_text(encoding="utf-8"))


def manifest_files(groups: list[str] | None = None) -> list[RemoteFile]:
    manifest = load_manifest()
    unknown = sorted(set(groups or []) - set(manifest))
    if unknown:
        raise SegunifyError(f"unknown fetch group(s) {unknown}; known: {', '.join(manifest)}")
    return [
        RemoteFile(name, url, dest, size, sha)
        for name, group in manifest.items()
        if not groups or name in groups
        for url, dest, size, sha in group["files"]
    ]


def fetch_file(item: RemoteFile, dest_root: Path, mirror: str | None = None, timeout: float = 60.0) -> bool:
    """Download one file unless a verified copy is there; returns True when it downloaded.

    The data goes to a temp file, is checked (size, sha256) and only then renamed into place, so an
    interrupted or corrupted download never leaves a file that looks complete.
    """
    target = dest_root / item.dest
    if target.is_file() and target.stat().st_size == item.size and sha256_file(target) == item.sha256:
        return False
    url = f"{mirror.rstrip('/')}/{item.dest}" if mirror else item.url
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise SegunifyError(f"cannot write file: {exc.strerror or exc}", target) from None
    try:
        h = hashlib.sha256()
        size = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:  # noqa: S310
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise SegunifyError(f"download failed from {url}: {exc}", target) from None
        if size != item.size or h.hexdigest() != item.sha256:
            raise SegunifyError(
                f"checksum mismatch for {url}: got {size} bytes sha256 {h.hexdigest()[:16]}..., "
                f"expected {item.size} bytes sha256 {item.sha256[:16]}...",
                target,
            )
        os.chmod(tmp, file_mode())  # mkstemp gives 0600; a team's shared data folder needs the umask's mode
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def fetch(
    dest_root: Path,
    groups: list[str] | None = None,
    mirror: str | None = None,
    progress: Callable[[RemoteFile, bool], None] | None = None,
) -> tuple[int, int]:
    """Fetch every file of the chosen groups; returns (downloaded, already present)."""
    downloaded = present = 0
    for item in manifest_files(groups):
        got = fetch_file(item, dest_root, mirror)
        downloaded += got
        present += not got
        if progress:
            progress(item, got)
    return downloaded, present
