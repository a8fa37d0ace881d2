"""``segunify mapping check|show|list|convert|diff|suggest|audit``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from segunify.cli._util import (
    MAX_PIXELS_HELP,
    flag_errors,
    make_dataset,
    parse_size,
    progress_bar,
    set_max_pixels,
    table,
)
from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes, atomic_write_json
from segunify.jsonio import read_json_object
from segunify.mapping import available_mappings, load_mapping, resolve_mapping
from segunify.taxonomy import load_taxonomy

mapping_app = typer.Typer(
    help="Validate, show, convert, compare, suggest and audit mapping files (extra classes -> source classes).",
    no_args_is_help=True,
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
    unclaimed = m.unclaimed_sources()
    partition = "no (a source class in several sets)" if not m.is_partition else "yes"
    if m.is_partition and unclaimed:
        partition = f"no ({len(unclaimed)} source class(es) in no set)"
    console.print(
        f"ok: {m.path}: {m.extra.name} ({m.extra.num_classes}) -> {m.source.name} ({m.source.num_classes}); "
        f"{kinds.count('one-to-one')} one-to-one, {kinds.count('one-to-many')} one-to-many, {kinds.count('void')} void; "
        f"partition: {partition}"
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
    extra: str = typer.Option(
        None, "--extra", help="match the authors' classes BY NAME to this taxonomy and validate the result"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
) -> None:
    """Convert the paper authors' layout (labels.csv + master_labels_<source>.csv) into our mapping CSV;
    prints each row's void policy and the names that matched no class."""
    from segunify.cli import console, err_console
    from segunify.mapcheck.convert import MAPPED, convert_authors_layout

    _check_outputs([out], overwrite, [(labels, "the --labels file"), (master, "the --master file")])
    conv = convert_authors_layout(
        labels, master, load_taxonomy(source), load_taxonomy(extra) if extra else None
    )
    for note in conv.notes:
        err_console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if conv.unmatched:
        err_console.print(
            f"warning: {len(conv.unmatched)} class(es) of {labels} match no class of taxonomy {extra!r}: "
            + ", ".join(conv.unmatched),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    t = table(
        "extra id", "extra class", "source classes", "void policy", title=f"{labels.name} + {master.name}"
    )
    for row in conv.rows:
        policy = row.policy if row.policy != MAPPED else ""
        t.add_row(str(row.extra_id), row.name, ", ".join(row.classes) or "void", policy)
    console.print(t)
    atomic_write_bytes(out, conv.text.encode("utf-8"))
    console.print(f"wrote {out}")


@mapping_app.command("diff")
def diff(
    a: str = typer.Argument(..., help="first mapping (CSV path or shipped extra__source)"),
    b: str = typer.Argument(..., help="second mapping of the same pair"),
    extra: str = typer.Option(None, "--extra", help="extra taxonomy of both (default from the file names)"),
    source: str = typer.Option(
        None, "--source", help="source taxonomy of both (default from the file names)"
    ),
    json_out: Path = typer.Option(None, "--json", help="also write every row as JSON"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --json"),
) -> None:
    """The rows where two mappings of the same pair disagree, set by set (exit 0 either way)."""
    from segunify.cli import console
    from segunify.mapcheck.diff import diff_mappings

    _check_outputs([json_out], overwrite, _files((a, "the first mapping"), (b, "the second mapping")))
    ma, mb = _load(a, extra, source), _load(b, extra, source)
    rows = diff_mappings(ma, mb)
    differing = [r for r in rows if r.differs]
    t = table("extra id", "extra class", "A", "B", "only in A", "only in B", "Jaccard",
              title=f"A = {ma.path}, B = {mb.path}")  # fmt: skip
    for r in differing:
        t.add_row(str(r.extra_id), r.name, ", ".join(r.both + r.only_a) or "void",
                  ", ".join(r.both + r.only_b) or "void", ", ".join(r.only_a) or "-",
                  ", ".join(r.only_b) or "-", f"{r.jaccard:.2f}")  # fmt: skip
    if differing:
        console.print(t)
    mean = sum(r.jaccard for r in rows) / len(rows)
    console.print(
        f"{len(differing)} of {len(rows)} rows differ; {len(rows) - len(differing)} identical; mean Jaccard {mean:.3f}",
        highlight=False,
    )
    if json_out:
        atomic_write_json(json_out, {"a": ma.path, "b": mb.path, "rows": [r.to_json() for r in rows]})


def _check_outputs(paths, overwrite: bool, inputs) -> None:
    """Output files by the one policy (:func:`segunify.outputs.check_output_file`): never a silent
    replace (someone's hand-edited mapping may be there), never inside what the command reads."""
    from segunify.outputs import check_output_file

    for p in paths:
        if p is not None:
            check_output_file(p, overwrite, inputs)


def _files(*named: tuple[str | Path | None, str]) -> list[tuple[str | Path, str]]:
    """The named inputs that are paths on disk (a shipped mapping's name is not)."""
    return [(p, what) for p, what in named if p is not None and Path(p).exists()]


def _read_inputs(teacher, dataset, root, split) -> list[tuple[Path | str, str]]:
    """What a teacher pass reads: the teacher checkpoint, the dataset root and its samples' folders."""
    from segunify.outputs import sample_inputs

    inputs = _files((teacher, "the teacher checkpoint"))
    if dataset is not None and root is not None:
        ds = make_dataset(dataset, root)
        inputs += sample_inputs(ds.root, ds.samples(split))
    return inputs


def _teacher_classes(teacher: str) -> tuple[str | None, tuple[str, ...]]:
    from segunify.models.checkpoint import load_meta

    meta = load_meta(Path(teacher))
    return meta.taxonomy, tuple(meta.classes)


def _cooccurrence(teacher, dataset, root, split, limit, size, confidence, device, threads):
    """One teacher pass without priors over the (subsampled) split -> co-occurrence statistics."""
    import torch

    from segunify.cli import console
    from segunify.mapcheck.cooccurrence import CoOccurrence, labelled_pairs, labelled_samples, teacher_pass
    from segunify.models.inference import Predictor

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SegunifyError(f"--device {device} but no CUDA device is available")
    ds = make_dataset(dataset, root)
    samples = labelled_samples(ds, split, limit)
    taxonomy, classes = _teacher_classes(teacher)
    if taxonomy is None:
        raise SegunifyError("the teacher checkpoint names no taxonomy; cannot name its classes", teacher)
    source = load_taxonomy(taxonomy)
    if tuple(source.classes) != classes:
        raise SegunifyError(f"teacher classes differ from taxonomy {taxonomy!r}", teacher)
    cooc = CoOccurrence(ds.taxonomy, source, confidence)
    opts = {"size": parse_size(size)} if size else {}
    predictor = Predictor.from_checkpoint(teacher, device=device, **opts)
    with progress_bar(console=console, disable=os.environ.get("SEGUNIFY_NO_PROGRESS") is not None) as bar:
        task = bar.add_task(f"teacher on {ds.name}/{split}", total=len(samples), rate="")
        teacher_pass(predictor, labelled_pairs(ds, samples), cooc, lambda n: bar.update(task, advance=n))
    shape = "x".join(map(str, predictor.size)) if predictor.size else "each image's own size"
    where = f"{len(samples)} labelled image(s) of {ds.name}/{split} (evenly spread), teacher input {shape}"
    return cooc, where


@mapping_app.command("suggest")
def suggest(
    teacher: str = typer.Option(..., "--teacher", help="teacher checkpoint folder (run without priors)"),
    dataset: str = typer.Option(
        ..., "--dataset", help="dataset name (segunify datasets list) or a dataset spec .yaml"
    ),
    root: str = typer.Option(..., "--root", help="dataset root folder"),
    out: Path = typer.Option(..., "--out", help="draft mapping CSV to write"),
    split: str = typer.Option("train", "--split", help="dataset split"),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="N labelled samples spread evenly over the split"
    ),
    size: str | None = typer.Option(None, "--size", help="teacher input H,W (default: the checkpoint's)"),
    coverage: float = typer.Option(0.9, "--coverage", help="the set covers at least this share of pixels"),
    min_share: float = typer.Option(0.02, "--min-share", help="no member below this share"),
    min_pixels: int = typer.Option(1000, "--min-pixels", help="fewer pixels -> a REVIEW row, not a guess"),
    png: Path = typer.Option(None, "--png", help="also draw the row-normalised heatmap here"),
    json_out: Path = typer.Option(None, "--json", help="also write the co-occurrence statistics here"),
    confidence: float = typer.Option(0.5, "--confidence", help="threshold of the confident counts in --json"),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, ...)"),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
) -> None:
    """Draft a mapping from data: the teacher's unconstrained predictions on each ground-truth class."""
    from segunify.cli import console
    from segunify.mapcheck.suggest import SuggestRule, draft_csv, heatmap_png, suggest_sets

    with flag_errors():
        rule = SuggestRule(coverage, min_share, min_pixels)
    set_max_pixels(max_pixels)
    _check_outputs([out, png, json_out], overwrite, _read_inputs(teacher, dataset, root, split))
    cooc, where = _cooccurrence(teacher, dataset, root, split, limit, size, confidence, device, threads)
    rows = suggest_sets(cooc, rule)
    provenance = f"teacher {teacher} ({cooc.source.name}) on {where}"
    if png:
        atomic_write_bytes(
            png,
            heatmap_png(cooc, [r.members for r in rows], f"{cooc.extra.name} -> {cooc.source.name}: {where}"),
        )
    if json_out:
        atomic_write_json(json_out, {"provenance": provenance, "rule": rule.describe(), **cooc.to_json()})
    atomic_write_bytes(out, draft_csv(cooc, rows, rule, provenance).encode("utf-8"))
    t = table("extra id", "extra class", "pixels", "suggested set", "covers", title=f"draft {out}")
    for r in rows:
        members = ", ".join(cooc.source.classes[c] for c in r.members)
        t.add_row(
            str(r.extra_id), r.name, f"{r.pixels:,}", "REVIEW" if r.review else members, f"{r.covered:.1%}"
        )
    console.print(t)
    review = sum(r.review for r in rows)
    console.print(f"wrote {out}" + (f" ({review} row(s) marked REVIEW)" if review else ""), highlight=False)


@mapping_app.command("audit")
def audit(
    csv: str = typer.Argument(..., help="mapping CSV path, or a shipped one as extra__source"),
    teacher: str = typer.Option(None, "--teacher", help="teacher checkpoint folder (run without priors)"),
    dataset: str = typer.Option(None, "--dataset", help="dataset name or a dataset spec .yaml"),
    root: str = typer.Option(None, "--root", help="dataset root folder"),
    split: str = typer.Option("train", "--split", help="dataset split"),
    stats: Path = typer.Option(
        None, "--stats", help="instead of a teacher pass: `mapping suggest --json` output"
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="N labelled samples spread evenly over the split"
    ),
    size: str | None = typer.Option(None, "--size", help="teacher input H,W (default: the checkpoint's)"),
    confidence: float = typer.Option(0.5, "--confidence", help="'confident' = top probability >= this"),
    min_member: float = typer.Option(0.005, "--min-member", help="a member below this share is 'unused'"),
    min_pixels: int = typer.Option(1000, "--min-pixels", help="fewer pixels: too few to judge (ranked last)"),
    top: int = typer.Option(0, "--top", help="show only the N most suspicious rows (0 = all)"),
    json_out: Path = typer.Option(None, "--json", help="also write every row as JSON"),
    png: Path = typer.Option(None, "--png", help="also draw the heatmap with the mapping's sets outlined"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files"),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda, ...)"),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads"),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Rows of a mapping that the teacher's unconstrained predictions contradict, most suspicious first.
    Advice only: exit 0 whenever it ran, 1 for bad input."""
    from segunify.mapcheck.audit import audit_mapping
    from segunify.mapcheck.cooccurrence import CoOccurrence
    from segunify.mapcheck.suggest import heatmap_png

    set_max_pixels(max_pixels)
    inputs = _files((csv, "the mapping"), (stats, "the --stats file"))
    _check_outputs([json_out, png], overwrite, inputs + _read_inputs(teacher, dataset, root, split))
    if stats is not None:
        cooc = CoOccurrence.from_json(read_json_object(stats, "co-occurrence statistics"), stats)
        mp = resolve_mapping(csv, cooc.extra, cooc.source)
        mp.check_compatible(cooc.extra, cooc.source.classes, f"statistics {stats}", f"statistics {stats}")
        where = f"statistics {stats} (confident = top probability >= {cooc.threshold})"
    else:
        if not (teacher and dataset and root):
            raise typer.BadParameter(
                "give --teacher, --dataset and --root (or --stats)", param_hint="--teacher"
            )
        taxonomy, classes = _teacher_classes(teacher)
        ds = make_dataset(dataset, root)
        mp = resolve_mapping(csv, ds.taxonomy, taxonomy)
        mp.check_compatible(ds.taxonomy, classes, f"dataset {dataset!r}", f"teacher {teacher}")
        cooc, where = _cooccurrence(teacher, dataset, root, split, limit, size, confidence, device, threads)
    with flag_errors():
        rows = audit_mapping(cooc, mp, min_member, min_pixels)
    _print_audit(rows, f"audit of {mp.path} on {where}", top)
    if json_out:
        atomic_write_json(json_out, {"mapping": mp.path, "on": where, "rows": [r.to_json() for r in rows]})
    if png:
        atomic_write_bytes(png, heatmap_png(cooc, mp.allowed_sets, f"{mp.path} on {where}"))


def _print_audit(rows, title: str, top: int) -> None:
    from segunify.cli import console

    t = table("rank", "extra class", "allowed", "pixels", "confident outside", "members (share)", "changed by prior",
              "suspicion", "flags", title=title)  # fmt: skip
    for rank, r in enumerate(rows[: top or None], start=1):
        members = ", ".join(f"{n} {v:.1%}" for n, v in r.member_shares.items()) or "void"
        t.add_row(str(rank), r.name, ", ".join(r.allowed) or "void", f"{r.pixels:,}", f"{r.outside_confident:.1%}",
                  members, f"{r.changed_by_prior:.1%}", f"{r.suspicion:.3f}", "; ".join(r.flags()))  # fmt: skip
    console.print(t)


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
