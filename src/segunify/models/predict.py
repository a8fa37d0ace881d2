"""What ``segunify predict`` writes and where: images in, label PNGs in a chosen taxonomy out.

The model predicts train ids of its own taxonomy. :func:`output_spec` turns them, with one LUT each, into
the ids that are written (the model's train ids; another taxonomy's train ids through a mapping whose
sets partition the model's classes; or a taxonomy's raw label ids, e.g. Cityscapes ``labelIds``) and the
colours of that taxonomy's palette. Files go only to paths proven to lie directly inside the output
folder, a folder predict made (its marker ``.segunify-predict``), never over an input image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segunify.errors import FieldError, SegunifyError
from segunify.outputs import check_apart, claim_folder
from segunify.taxonomy import IGNORE, Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from segunify.models.checkpoint import CheckpointMeta

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OUTPUTS = ("{}.png", "{}_color.png", "{}_overlay.png")


@dataclass(frozen=True)
class OutputSpec:
    """``ids[train_id]`` is the id written for a model class, ``colors[train_id]`` its colour."""

    ids: np.ndarray  # [256] uint8, or uint16 for raw ids above 255
    colors: np.ndarray  # [256, 3] uint8
    taxonomy: str | None
    raw_ids: bool = False


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursive) in named folders."""
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise SegunifyError("input not found", path)
    if not found:
        raise SegunifyError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the given input(s)")
    stems: dict[str, Path] = {}
    for p in found:
        if p.stem in stems and stems[p.stem] != p:
            raise SegunifyError(
                f"two inputs share the name {p.stem!r} ({stems[p.stem]}); outputs would collide", p
            )
        stems[p.stem] = p
    return list(dict.fromkeys(found))


def prepare_output(
    out: str | Path, images: Sequence[Path], inputs: Sequence[str | Path] = ()
) -> dict[Path, tuple[Path, Path, Path]]:
    """Claim ``out`` as a prediction folder (:func:`segunify.outputs.claim_folder`: new, empty or one a
    previous predict made) and return, per image, its three output paths, each proven to lie directly
    in ``out`` (resolved, links followed) and to be no input image. ``out`` may neither lie inside a
    folder named in ``inputs`` nor hold an input image. One line and nothing written otherwise."""
    out = Path(out)
    named = [(Path(p), "an input folder") for p in inputs if Path(p).is_dir()]
    check_apart([out], [*named, *((p, f"the input image {p.name}") for p in images)])
    claim_folder(out, "predict")
    if not os.access(out, os.W_OK | os.X_OK):
        raise SegunifyError("output folder is not writable", out)
    root = out.resolve()
    plan: dict[Path, tuple[Path, Path, Path]] = {}
    for image in images:
        paths = tuple(out / pattern.format(image.stem) for pattern in OUTPUTS)
        for path in paths:
            if path.resolve().parent != root or path.name in ("", ".", ".."):
                raise SegunifyError(f"output for {image.name} would lie outside the output folder", path)
        plan[image] = paths  # type: ignore[assignment]
    return plan


def raw_id_lut(taxonomy: Taxonomy) -> np.ndarray:
    """``[256]`` train id -> the taxonomy's raw label id (the first row of each class; ignore -> the
    first ignored row's id, e.g. Cityscapes 0 'unlabeled', else 255)."""
    rows = [lab for lab in taxonomy.labels if lab.id is not None]
    if not rows:
        raise SegunifyError(f"taxonomy {taxonomy.name!r} has no raw ids (colour-coded only)", taxonomy.source)
    ignore = next((lab.id for lab in rows if lab.ignore), IGNORE)
    lut = np.full(256, ignore, dtype=np.int64)
    done: set[int] = set()
    for lab in rows:
        if not lab.ignore and lab.train_id not in done:
            lut[lab.train_id] = lab.id
            done.add(lab.train_id)
    missing = [taxonomy.classes[t] for t in range(taxonomy.num_classes) if t not in done]
    if missing:
        raise SegunifyError(f"taxonomy {taxonomy.name!r} has no raw id for {missing}", taxonomy.source)
    return lut


def fallback_palette() -> np.ndarray:
    """Deterministic distinct-ish colours for checkpoints without a shipped taxonomy."""
    pal = np.random.default_rng(0).integers(0, 256, size=(256, 3), dtype=np.uint8)
    pal[IGNORE] = 0
    return pal


def _own_taxonomy(meta: CheckpointMeta) -> Taxonomy | None:
    """The checkpoint's taxonomy when it is a shipped one with the same classes."""
    try:
        tax = load_taxonomy(meta.taxonomy) if meta.taxonomy else None
    except SegunifyError:
        return None
    return tax if tax is not None and tuple(tax.classes) == tuple(meta.classes) else None


def output_spec(
    meta: CheckpointMeta,
    to: str | None = None,
    mapping: str | None = None,
    raw_ids: bool = False,
    where: str = "",
) -> OutputSpec:
    """The LUTs for a checkpoint's predictions (``meta``: its metadata; ``where``: its path, for errors).
    ``to`` = the checkpoint's own taxonomy without a mapping is the identity."""
    tax = _own_taxonomy(meta)
    lut = np.arange(256, dtype=np.int64)
    lut[meta.num_classes :] = IGNORE
    if to is not None or mapping is not None:
        target = load_taxonomy(to) if to is not None else None  # an unknown name: "unknown taxonomy"
        if mapping is not None or target is None or tax is None or target.name != tax.name:
            mp = _target_mapping(meta, target, mapping, where)
            lut = mp.source_to_extra_lut().astype(np.int64)[lut]
            tax = target or mp.extra
    if raw_ids and tax is None:
        raise FieldError("raw_ids", "needs a shipped taxonomy; the checkpoint's is unknown", where)
    palette = tax.palette() if tax is not None else fallback_palette()
    colors = palette[lut]
    if raw_ids:
        lut = raw_id_lut(tax)[lut]  # type: ignore[arg-type]
    dtype = np.uint8 if lut.max() <= 255 else np.uint16
    return OutputSpec(lut.astype(dtype), colors, tax.name if tax is not None else meta.taxonomy, raw_ids)


def _target_mapping(meta: CheckpointMeta, target: Taxonomy | None, mapping: str | None, where: str):
    """The mapping from ``target``'s classes to the checkpoint's: its sets must partition the checkpoint's
    classes (each in exactly one set), or some pixels would be written as another class or as void."""
    from segunify.mapping import resolve_mapping

    if mapping is None and not meta.taxonomy:
        raise FieldError("to", "needs a mapping: the checkpoint names no taxonomy", where)
    mp = resolve_mapping(mapping, target, meta.taxonomy, shipped_default=True)
    target = target or mp.extra
    mp.check_compatible(target, meta.classes, f"the output taxonomy {target.name!r}", f"checkpoint {where}")
    unclaimed = mp.unclaimed_sources()
    if unclaimed:
        raise SegunifyError(
            f"mapping leaves source class(es) {unclaimed} in no set: their pixels would be written as void; "
            "give a mapping whose sets hold every class of the checkpoint",
            mp.path,
        )
    return mp


__all__ = ["OutputSpec", "collect_images", "output_spec", "prepare_output", "raw_id_lut"]
