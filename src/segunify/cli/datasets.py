"""``segunify datasets list|check|stats``."""

from __future__ import annotations

import time

import typer

from segunify.cli._util import (
    MAX_PIXELS_HELP,
    make_dataset,
    parse_options,
    progress_bar,
    set_max_pixels,
    table,
)
from segunify.errors import SegunifyError

datasets_app = typer.Typer(
    help="Dataset adapters: list them, check a download, look at class statistics.", no_args_is_help=True
)

OPT_HELP = "dataset option key=value (e.g. label_crop=4,18 for the KITTI sample); repeatable"


@datasets_app.command("list")
def list_datasets() -> None:
    """Every dataset adapter with its taxonomy, splits, label encoding and shipped mappings."""
    from segunify.cli import console
    from segunify.datasets import available_datasets, get_dataset_class
    from segunify.mapping import available_mappings

    pairs = available_mappings()
    t = table("dataset", "domain", "taxonomy", "splits", "labels", "mappings to", title="Datasets")
    for name in available_datasets():
        cls = get_dataset_class(name)
        targets = sorted(s for e, s in pairs if e == cls.taxonomy_name)
        t.add_row(
            name, cls.domain, cls.taxonomy_name, ", ".join(cls.splits), cls.label_encoding, ", ".join(targets)
        )
    console.print(t)


@datasets_app.command("check")
def check(
    name: str = typer.Argument(
        ..., help="dataset name (see 'segunify datasets list') or a dataset spec .yaml"
    ),
    root: str = typer.Option(..., "--root", help="dataset root in the publisher's layout"),
    split: list[str] = typer.Option(None, "--split", help="split(s) to check; default all"),
    opt: list[str] = typer.Option(None, "--opt", help=OPT_HELP),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Counts per split; every image has a readable label of the same size holding only known ids/colours.
    Lists each problem with its file; exit 1 on any."""
    from segunify.cli import console
    from segunify.datasets import check_dataset

    set_max_pixels(max_pixels)
    dataset = make_dataset(name, root, parse_options(opt))
    splits = split or list(dataset.splits)
    total = 0
    for s in splits:
        if s not in dataset.splits:
            raise SegunifyError(
                f"dataset {dataset.name!r} has no split {s!r}; splits: {', '.join(dataset.splits)}"
            )
        try:
            total += len(dataset.samples(s))
        except SegunifyError:
            pass  # check_dataset reports it as a problem of the root
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task(f"checking {dataset.name}", total=total, rate="")
        start = time.perf_counter()

        def step(n: int) -> None:
            bar.advance(task, n)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.perf_counter() - start, 1e-9):.1f} img/s")

        report = check_dataset(dataset, splits, progress=step)
    console.print(f"{dataset.name} at {root}")
    t = table("split", "pairs")
    for s, n in report.counts.items():
        t.add_row(s, str(n))
    console.print(t)
    if report.problems:
        for file, message in report.problems:
            console.print(
                f"problem: {message}" if file in message else f"problem: {file}: {message}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        console.print(f"{len(report.problems)} problem(s) found")
        raise typer.Exit(1)
    listed = sum(report.counts.values())
    overlap = f" ({listed} in the splits, which overlap)" if listed != report.pairs else ""
    console.print(f"ok: {report.pairs} pairs{overlap}, no problems")


@datasets_app.command("stats")
def stats(
    name: str = typer.Argument(...),
    root: str = typer.Option(..., "--root"),
    split: str = typer.Option(None, "--split", help="default: the first split with samples"),
    limit: int = typer.Option(50, "--limit", min=0, help="labels sampled (evenly spaced; 0 = all)"),
    opt: list[str] = typer.Option(None, "--opt", help=OPT_HELP),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Per-class pixel shares over a sample of labels (fast: labels only, no images)."""
    import numpy as np

    from segunify.cli import console
    from segunify.datasets.base import evenly, no_samples_message

    set_max_pixels(max_pixels)
    dataset = make_dataset(name, root, parse_options(opt))
    splits = [split] if split else [s for s in dataset.splits if dataset.samples(s)][:1]
    if not splits:
        raise SegunifyError(f"dataset {dataset.name!r}: {no_samples_message(dataset)}", root)
    samples = [s for s in dataset.samples(splits[0]) if s.label is not None]
    samples = evenly(samples, limit or None)
    tax = dataset.taxonomy
    counts = np.zeros(256, dtype=np.int64)
    for s in samples:
        counts += np.bincount(dataset.read_label(s).ravel(), minlength=256)
    total = counts.sum()
    t = table(
        "train id",
        "class",
        "pixel share %",
        title=f"{dataset.name} {splits[0]}: {len(samples)} labels, {total:,} pixels",
    )
    for i, c in enumerate(tax.classes):
        t.add_row(str(i), c, f"{100 * counts[i] / max(total, 1):.2f}")
    t.add_row("255", "ignore", f"{100 * counts[255] / max(total, 1):.2f}")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
