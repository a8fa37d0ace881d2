"""``segunify export-dataset``: the compound training set a train config describes, written for any trainer.

Each part of the config is resolved by the trainer's own code (:func:`segunify.train.parts.resolve_parts`,
the same checks as ``segunify train``) and written with its labels in the target (source) taxonomy's train
ids, 255 ignore: ground truth through its codec and one-to-one mapping, pseudo-labels as their folder holds
them. Layouts (:mod:`.writers`): ``plain`` (``images/``, ``labels/``, ``splits/``) and ``parquet``
(Hugging Face ``datasets``-loadable shards); both get ``taxonomy.csv`` and a dataset card (:mod:`.card`).

A rerun into the same folder skips the parts whose record says finished with the same inputs (a plain
part left half-done resumes frame by frame); a part whose inputs changed is rewritten, and a part the config
no longer has is removed. The folder is claimed with a marker, like a pseudo-label folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segunify.apps.export.card import dataset_info, part_entry, readme, taxonomy_csv
from segunify.apps.export.parts import ExportPart, export_parts
from segunify.apps.export.writers import (
    Advance,
    claim_output,
    clear_part,
    read_record,
    recorded_parts,
    write_parquet,
    write_plain,
    write_record,
)
from segunify.errors import FieldError, SegunifyError
from segunify.io import atomic_write_json, atomic_write_text, sha256_file
from segunify.outputs import folder_lock, sample_inputs
from segunify.train.parts import PseudoPart

LAYOUTS = ("plain", "parquet")
Progress = Callable[[str, int], Advance]  # (part name, frames to write) -> advance(n)


@dataclass
class ExportResult:
    out: Path
    info: dict
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def image_mode(layout: str, copy: bool | None) -> str:
    """How images reach the export: ``linked`` (plain, the default), ``copied`` or ``embedded`` (parquet)."""
    if layout not in LAYOUTS:
        raise SegunifyError(f"unknown export format {layout!r}; formats: {', '.join(LAYOUTS)}")
    if layout == "parquet":
        if copy is False:
            raise FieldError("copy", "links are for the plain format: parquet shards hold the images' bytes")
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise SegunifyError(
                "the parquet format needs pyarrow: pip install 'segunify[datasets]'"
            ) from None
        return "embedded"
    return "copied" if copy else "linked"


def redistribution_warnings(parts: Sequence[ExportPart], mode: str) -> list[str]:
    """Copies of data whose terms forbid (or do not say they allow) sharing them."""
    if mode == "linked":
        return []
    out = []
    for ep in parts:
        adapter = ep.part.adapter
        terms = adapter.licence or "terms not recorded by segunify"
        if adapter.redistribution is False:
            out.append(
                f"part {ep.name}: the terms of {adapter.name} forbid redistribution ({terms}); this export "
                "holds copies of its images: keep it to the people those terms cover"
            )
        elif adapter.redistribution is None:
            out.append(
                f"part {ep.name}: whether {adapter.name} may be redistributed is not recorded ({terms}); "
                "check its terms before sharing this export"
            )
    return out


def export_dataset(
    config_path: str | Path,
    out: str | Path,
    layout: str = "plain",
    copy: bool | None = None,
    overrides: Sequence[str] = (),
    progress: Progress | None = None,
) -> ExportResult:
    """Write the compound training set of the train config at ``config_path`` into ``out``."""
    from segunify.train.config import load_config

    mode = image_mode(layout, copy)
    config_path, out = Path(config_path), Path(out)
    cfg = load_config(config_path, overrides)
    target, parts = export_parts(cfg, config_path)
    inputs = [i for ep in parts for i in sample_inputs(ep.part.adapter.root, ep.samples)]
    inputs += [
        (ep.part.folder.path, "a pseudo-label folder") for ep in parts if isinstance(ep.part, PseudoPart)
    ]
    claim_output(out, layout, inputs)
    result = ExportResult(out=out, info={}, warnings=redistribution_warnings(parts, mode))
    with folder_lock(out, "export"):
        for stale in sorted(set(recorded_parts(out)) - {ep.name for ep in parts}):
            clear_part(out, stale)
            result.removed.append(stale)
        entries = [_export_part(out, ep, layout, mode, target, result, progress) for ep in parts]
        config = {
            "path": str(config_path.resolve()),
            "sha256": sha256_file(config_path),
            "set": list(overrides),
        }
        result.info = dataset_info(target, entries, layout, mode, config)
        atomic_write_text(out / "taxonomy.csv", taxonomy_csv(target))
        atomic_write_json(out / "dataset_info.json", result.info, indent=2)
        atomic_write_text(out / "README.md", readme(result.info, result.warnings))
    return result


def _export_part(out, ep: ExportPart, layout, mode, target, result: ExportResult, progress) -> dict:
    """One part: skipped when finished with the same inputs, else (re)written; its card entry."""
    wanted = ep.fingerprint(layout, mode, target)
    record = read_record(out, ep.name)
    same = record is not None and record.get("fingerprint") == wanted
    if same and record.get("done"):
        result.skipped.append(ep.name)
        return part_entry(ep, np.asarray(record["counts"], dtype=np.int64), target)
    if not same or layout == "parquet":
        clear_part(out, ep.name)
    write_record(out, ep.name, {"fingerprint": wanted, "done": False})
    advance = progress(ep.name, len(ep.samples)) if progress else (lambda n: None)
    if layout == "parquet":
        counts = write_parquet(out, ep, advance)
    else:
        counts = write_plain(out, ep, mode, resume=same, advance=advance)
    write_record(out, ep.name, {"fingerprint": wanted, "done": True, "counts": counts.tolist()})
    result.written.append(ep.name)
    return part_entry(ep, counts, target)


__all__ = ["LAYOUTS", "ExportResult", "export_dataset", "image_mode"]
