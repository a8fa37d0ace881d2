"""``segunify fetch``: download the demo data and weights from their public originals."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from segunify.cli._util import progress_bar, table
from segunify.errors import SegunifyError
from segunify.paths import ENV


def fetch_command(
    dest: Path = typer.Option(
        None, "--dest", help=f"folder to fill with data/ and weights/ (default: ${ENV})"
    ),
    only: list[str] = typer.Option(
        None, "--only", help="group(s) to fetch: weights, camvid, kitti-sample, rugd-sample"
    ),
    mirror: str = typer.Option(
        None, "--mirror", help="URL prefix of a mirror with the same layout (e.g. file:///data/shared)"
    ),
    list_groups: bool = typer.Option(False, "--list", help="list the groups, their sources and licences"),
) -> None:
    """Download the public originals named in each SOURCE.md, checking size and sha256 of every file."""
    from segunify.cli import console
    from segunify.fetch import fetch, load_manifest, manifest_files

    if list_groups:
        t = table("group", "files", "MB", "source", "licence")
        for name, g in load_manifest().items():
            mb = sum(f[2] for f in g["files"]) / 1e6
            t.add_row(
                name,
                str(len(g["files"])),
                f"{mb:.1f}",
                f"github.com/{g['repo']} @ {g['commit'][:10]}",
                g["license"],
            )
        console.print(t)
        return
    if dest is None:
        if not os.environ.get(ENV):
            raise SegunifyError(f"give --dest DIR or set {ENV}")
        dest = Path(os.environ[ENV])
    files = manifest_files(only)
    with progress_bar(console=console) as bar:
        task = bar.add_task("fetching", total=len(files), rate="")
        downloaded, present = fetch(dest, only, mirror, progress=lambda item, got: bar.advance(task))
    console.print(f"{downloaded} downloaded, {present} already present and verified, in {dest}")
    console.print(f"use it with: export {ENV}={dest.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_command)
