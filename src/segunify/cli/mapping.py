"""``segunify mapping check|show|convert``."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from segunify.cli._util import table
from segunify.io import atomic_write_bytes
from segunify.mapping import available_mappings, convert_authors_layout, load_mapping, parse_mapping
from segunify.taxonomy import load_taxonomy

mapping_app = typer.Typer(
    help="Validate, show and convert mapping files (extra classes -> source classes).", no_args_is_help=True
)


def _load(csv: str, extra: str | None, source: str | None):
    return load_mapping(csv, extra=extra, source=source)


@mapping_app.command("check")
def check(
    csv: str = typer.Argument(..., help="mapping CSV path, or a shipped one as extra__source"),
    extra: str = typer.Option(
        None, "--extra", help="extra taxonomy (name or CSV); default from the file name"
    ),
    source: str = typer.Option(
        None, "--source", help="source taxonomy (name or CSV); default from the file name"
    ),
) -> None:
    """Validate a mapping against its two taxonomies; exit 1 with file:line: problem on the first error."""
    from segunify.cli import console

    m = _load(csv, extra, source)
    kinds = [m.kind(k) for k in range(m.extra.num_classes)]
    unclaimed = [m.source.classes[c] for c in range(m.source.num_classes) if not m.allowed[:, c].any()]
    console.print(
        f"ok: {m.path}: {m.extra.name} ({m.extra.num_classes}) -> {m.source.name} ({m.source.num_classes}); "
        f"{kinds.count('one-to-one')} one-to-one, {kinds.count('one-to-many')} one-to-many, {kinds.count('void')} void; "
        f"partition: {'yes' if m.is_partition else 'no'}"
    )
    if unclaimed:
        console.print(f"source classes no extra class allows: {', '.join(unclaimed)}")


@mapping_app.command("show")
def show(
    csv: str = typer.Argument(..., help="mapping CSV path, or a shipped one as extra__source"),
    extra: str = typer.Option(None, "--extra"),
    source: str = typer.Option(None, "--source"),
) -> None:
    """Show each extra class, its kind and its allowed source classes."""
    from segunify.cli import console

    m = _load(csv, extra, source)
    t = table(
        "extra id",
        "extra class",
        "kind",
        "allowed source classes",
        title=f"{m.extra.name} -> {m.source.name}",
    )
    for k, cs in enumerate(m.allowed_sets):
        t.add_row(str(k), m.extra.classes[k], m.kind(k), ", ".join(m.source.classes[c] for c in cs) or "void")
    console.print(t)


@mapping_app.command("list")
def list_mappings() -> None:
    """List the shipped mapping files."""
    from segunify.cli import console

    t = table("extra", "source", "file", title="Shipped mappings (segunify/mappings/)")
    for e, s in available_mappings():
        t.add_row(e, s, f"{e}__{s}.csv")
    console.print(t)


@mapping_app.command("convert")
def convert(
    labels: Path = typer.Option(..., "--labels", help="authors' labels.csv of the extra dataset"),
    master: Path = typer.Option(..., "--master", help="authors' master_labels_<source>.csv"),
    source: str = typer.Option(..., "--source", help="source taxonomy (name or CSV)"),
    out: Path = typer.Option(..., "--out", help="our mapping CSV to write"),
    extra: str = typer.Option(None, "--extra", help="validate the result against this extra taxonomy"),
) -> None:
    """Convert the paper authors' layout (labels.csv + master_labels_<source>.csv) into our mapping CSV."""
    from segunify.cli import console, err_console

    source_t = load_taxonomy(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = convert_authors_layout(labels, master, source_t)
    for w in caught:
        err_console.print(f"warning: {w.message}", markup=False)
    if extra:
        parse_mapping(text, load_taxonomy(extra), source_t, path=str(out))
    atomic_write_bytes(out, text.encode("utf-8"))
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
