"""``segunify taxonomy list|show``."""

from __future__ import annotations

import typer

from segunify.cli._util import swatch, table
from segunify.taxonomy import IGNORE, available_taxonomies, load_taxonomy

taxonomy_app = typer.Typer(
    help="Inspect taxonomies (class lists shipped as data files).", no_args_is_help=True
)


@taxonomy_app.command("list")
def list_taxonomies() -> None:
    """List the shipped taxonomies."""
    from segunify.cli import console

    t = table("name", "classes", "raw labels", "description", title="Taxonomies (segunify/taxonomies/*.csv)")
    for name in available_taxonomies():
        tax = load_taxonomy(name)
        t.add_row(name, str(tax.num_classes), str(len(tax.labels)), tax.description)
    console.print(t)


@taxonomy_app.command("show")
def show(name: str = typer.Argument(..., help="taxonomy name or path to a taxonomy CSV")) -> None:
    """Show every raw label of a taxonomy and the train class it maps to."""
    from segunify.cli import console

    tax = load_taxonomy(name)
    t = table(
        "id", "name", "train id", "class", "category", "color", title=f"{tax.name}: {tax.num_classes} classes"
    )
    for lab in tax.labels:
        train = "ignore" if lab.train_id == IGNORE else str(lab.train_id)
        cls = "" if lab.train_id == IGNORE else tax.classes[lab.train_id]
        t.add_row(
            "-" if lab.id is None else str(lab.id), lab.name, train, cls, lab.category, swatch(lab.color)
        )
    console.print(t)
    if tax.source:
        console.print(f"source: {tax.source}")


def register(app: typer.Typer) -> None:
    app.add_typer(taxonomy_app, name="taxonomy")
